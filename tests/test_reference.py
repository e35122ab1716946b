"""Tests of lmu.reference, the step-by-step NumPy LMU.

The expected values come from independent paths: the convolution of the memory's input with
the impulse response (LTI case), and a plain per-sample loop written from the equations in
DESIGN.md (never calling reference.step).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import scipy.signal

from lmu import reference
from lmu.config import ACTIVATIONS, LMUConfig
from lmu.system import impulse_response, legendre_system, lmu_matrices

RNG = np.random.default_rng(12345)

# activations written out independently of reference.ACTIVATION_FUNCTIONS
ACT: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda v: v,
    "tanh": lambda v: (np.exp(v) - np.exp(-v)) / (np.exp(v) + np.exp(-v)),
    "relu": lambda v: np.where(v > 0, v, 0.0),
    "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)),
    "elu": lambda v: np.where(v > 0, v, np.exp(v) - 1.0),
    "softplus": lambda v: np.log(1.0 + np.exp(v)),
    "swish": lambda v: v / (1.0 + np.exp(-v)),
}


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def cfg(**kw: Any) -> LMUConfig:
    base: dict[str, Any] = {"memory_d": 2, "order": 4, "theta": 6.0}
    base.update(kw)
    return LMUConfig(**base)


# -- an independent, plain loop of the equations in DESIGN.md --------------------------------


def hidden_one_sample(
    kind: str, act: str, w: dict[str, np.ndarray], v: np.ndarray, hs: list[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One hidden-cell step for a single sample (vectors), Keras gate order."""
    f = ACT[act]
    K = w["hidden_kernel"]
    b = w["hidden_bias"]
    if kind == "dense":
        o = f(v @ K + b)
        return o, [o]
    R = w["hidden_recurrent_kernel"]
    h = hs[0]
    n = h.shape[0]
    if kind == "simple_rnn":
        o = f(v @ K + h @ R + b)
        return o, [o]
    if kind == "lstm":
        c = hs[1]
        z = v @ K + h @ R + b
        gi, gf, gc, go = z[:n], z[n : 2 * n], z[2 * n : 3 * n], z[3 * n :]
        c_new = sigmoid(gf) * c + sigmoid(gi) * f(gc)
        o = sigmoid(go) * f(c_new)
        return o, [o, c_new]
    assert kind == "gru"
    xk = v @ K + b[0]
    hk = h @ R + b[1]
    z = sigmoid(xk[:n] + hk[:n])
    r = sigmoid(xk[n : 2 * n] + hk[n : 2 * n])
    hh = f(xk[2 * n :] + r * hk[2 * n :])
    o = z * h + (1 - z) * hh
    return o, [o]


def loop_lmu(
    config: LMUConfig,
    w: dict[str, np.ndarray],
    x: np.ndarray,
    init: Sequence[np.ndarray] | None = None,
    native: Callable[..., Any] | None = None,
    native_states: Sequence[int] = (),
    input_mask: np.ndarray | None = None,
    recurrent_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Plain per-sample, per-dimension loop of the LMU equations."""
    md, d = config.memory_d, config.order
    mats = [lmu_matrices(d, th, config.discretizer) for th in config.thetas]
    batch, T, _ = x.shape
    spec = config.hidden_cell
    kind = spec["type"] if isinstance(spec, dict) else None
    outs = np.zeros((batch, T, 0)).tolist()
    finals: list[list[np.ndarray]] = []
    for b in range(batch):
        if init is not None:
            m = np.array(init[0][b], dtype=float).reshape(md, d)
            hs = [np.array(s[b], dtype=float) for s in init[1:]]
        else:
            m = np.zeros((md, d))
            if kind is None and native is None:
                hs = []
            elif native is not None:
                hs = [np.zeros(n) for n in native_states]
            else:
                units = spec["units"]
                hs = [np.zeros(units), np.zeros(units)] if kind == "lstm" else [np.zeros(units)]
        seq = []
        for t in range(T):
            xt = x[b, t]
            u_in = np.concatenate([xt, hs[0]]) if config.hidden_to_memory else xt.copy()
            if input_mask is not None:
                u_in = u_in * input_mask[b]
            u = u_in @ w["kernel"] if config.kernel_initializer is not None else u_in.copy()
            if config.use_bias:
                u = u + w["bias"]
            if config.memory_to_memory:
                mf = m.reshape(-1)
                if recurrent_mask is not None:
                    mf = mf * recurrent_mask[b]
                for k in range(md):
                    u[k] += sum(mf[p] * w["recurrent_kernel"][p, k] for p in range(md * d))
            new_m = np.zeros_like(m)
            for k in range(md):
                Ad, Bd = mats[k]
                new_m[k] = Ad @ m[k] + Bd[:, 0] * u[k]
            m = new_m
            flat = m.reshape(-1)
            if kind is None and native is None:
                # no hidden cell: the output is the memory, with input_to_hidden [m_t, x_t]
                seq.append(np.concatenate([flat, xt]) if config.input_to_hidden else flat.copy())
                continue
            v = np.concatenate([flat, xt]) if config.input_to_hidden else flat
            if native is not None:
                o, hs = native(v[None], [h[None] for h in hs])
                o, hs = o[0], [h[0] for h in hs]
            else:
                o, hs = hidden_one_sample(kind, spec["activation"], w, v, hs)
            seq.append(o)
        outs[b] = seq
        finals.append([m.reshape(-1), *hs] if (kind or native) else [m.reshape(-1)])
    out = np.array(outs)
    states = [np.stack([f[i] for f in finals]) for i in range(len(finals[0]))]
    return out, states


def conv_memory(config: LMUConfig, w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The LTI memory as a convolution of u = x @ kernel (+ bias) with the impulse response."""
    md, d = config.memory_d, config.order
    u = x @ w["kernel"] if config.kernel_initializer is not None else x
    if config.use_bias:
        u = u + w["bias"]
    batch, T, _ = x.shape
    H = impulse_response(d, list(config.thetas), T, config.discretizer)  # (md, T, d)
    m = np.zeros((batch, T, md, d))
    for k in range(md):
        for t in range(T):
            # m_t = sum_s H[t - s] u_s
            m[:, t, k] = np.einsum("sd,bs->bd", H[k, t::-1], u[:, : t + 1, k])
    return m.reshape(batch, T, md * d)


def inputs(batch: int, T: int, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, T, n))


def close(a: np.ndarray, b: np.ndarray, tol: float = 1e-11) -> None:
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# -- LTI memory ---------------------------------------------------------------------------------


LTI_CASES = [
    {},
    {"use_bias": True},
    {"memory_d": 3, "theta": [2.0, 9.5, 40.0]},
    {"discretizer": "bilinear", "order": 6},
    {"discretizer": "euler", "theta": 50.0, "order": 3},
    {"kernel_initializer": None, "input_d": 2},
    {"memory_d": 1, "order": 1, "theta": 1.5},
]


@pytest.mark.parametrize("kw", LTI_CASES)
def test_lti_memory_is_convolution_with_impulse_response(kw: dict[str, Any]) -> None:
    c = cfg(**kw)
    n_in = c.memory_d if c.kernel_initializer is None else 3
    w = reference.random_weights(c, n_in, seed=1)
    x = inputs(2, 40, n_in)
    out, states = reference.run(c, w, x)
    expected = conv_memory(c, w, x)
    assert out.shape == (2, 40, c.memory_d * c.order)
    close(out, expected, 1e-10)
    assert len(states) == 1
    close(states[0], expected[:, -1], 1e-10)


def test_lti_memory_with_dense_hidden_and_input_to_hidden() -> None:
    c = cfg(hidden_cell={"type": "dense", "units": 5, "activation": "tanh"}, input_to_hidden=True)
    w = reference.random_weights(c, 3, seed=2)
    x = inputs(2, 25, 3)
    out, states = reference.run(c, w, x)
    m = conv_memory(c, w, x)
    hidden_in = np.concatenate([m, x], axis=-1)
    expected = np.tanh(hidden_in @ w["hidden_kernel"] + w["hidden_bias"])
    close(out, expected)
    close(states[0], m[:, -1])
    close(states[1], expected[:, -1])


# -- no hidden cell, input_to_hidden: the output is [m_t, x_t] (keras-lmu) ----------------------


def _half_decay_config(**kw: Any) -> LMUConfig:
    # order 1: A = [[-1]], B = [1]; theta = 1 / ln 2 makes zoh's Ad = exp(-1/theta) = 1/2 and
    # Bd = 1 - Ad = 1/2, so the memory is m_t = (m_{t-1} + u_t) / 2, exactly
    return LMUConfig(
        memory_d=1, order=1, theta=1.0 / np.log(2.0), input_to_hidden=True, input_d=2, **kw
    )


HALF_KERNEL = np.array([[2.0], [-1.0]])
HALF_X = np.array([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]])


def test_no_hidden_cell_input_to_hidden_outputs_memory_and_input() -> None:
    c = _half_decay_config()
    # u = x @ kernel = [2, -1, 2]; m = [1, 0, 1]
    out, states = reference.run(c, {"kernel": HALF_KERNEL}, HALF_X)
    expected = np.array([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 2.0, 2.0]]])
    close(out, expected, 1e-14)
    assert len(states) == 1
    close(states[0], np.array([[1.0]]), 1e-14)
    # one step from that state: u = [3, -1] @ kernel = 7, m = (1 + 7) / 2 = 4
    out1, states1 = reference.step(c, {"kernel": HALF_KERNEL}, np.array([[3.0, -1.0]]), states)
    close(out1, np.array([[4.0, 3.0, -1.0]]), 1e-14)
    assert len(states1) == 1
    close(states1[0], np.array([[4.0]]), 1e-14)
    assert reference.output_size(c) == 3
    assert reference.state_sizes(c) == [1]


def test_no_hidden_cell_input_to_hidden_output_keeps_the_undropped_input() -> None:
    c = _half_decay_config(dropout=0.5)
    mask = np.array([[0.0, 2.0]])  # drops the first feature, doubles the second
    # the memory's input is dropped: u = (x * mask) @ kernel = [0, -2, -4]; m = [0, -1, -2.5]
    out, states = reference.run(c, {"kernel": HALF_KERNEL}, HALF_X, input_mask=mask)
    expected = np.array([[[0.0, 1.0, 0.0], [-1.0, 0.0, 1.0], [-2.5, 2.0, 2.0]]])
    close(out, expected, 1e-14)
    close(states[0], np.array([[-2.5]]), 1e-14)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"memory_to_memory": True, "use_bias": True, "theta": [3.0, 8.0]},
        {"kernel_initializer": None, "input_d": 2},
        {"discretizer": "bilinear", "order": 6, "memory_d": 1},
    ],
)
def test_no_hidden_cell_input_to_hidden_matches_plain_loop(kw: dict[str, Any]) -> None:
    c = cfg(input_to_hidden=True, **kw)
    w = reference.random_weights(c, 2, seed=5)
    x = inputs(2, 11, 2, seed=6)
    init = [RNG.normal(size=(2, c.memory_d * c.order))]
    out, states = reference.run(c, w, x, init)
    ref_out, ref_states = loop_lmu(c, w, x, init)
    assert out.shape == (2, 11, c.memory_d * c.order + 2)
    close(out, ref_out)
    close(out[..., c.memory_d * c.order :], x, 0.0)  # the input, unchanged
    close(out[:, -1, : c.memory_d * c.order], states[0])
    assert len(states) == len(ref_states) == 1
    close(states[0], ref_states[0])


def test_no_hidden_cell_input_to_hidden_output_size_needs_input_d() -> None:
    c = cfg(input_to_hidden=True)
    assert reference.output_size(c, input_d=3) == 2 * 4 + 3
    assert reference.hidden_output_size(c, input_d=3) == 2 * 4 + 3
    assert reference.output_size(c.replace(input_d=5)) == 2 * 4 + 5
    assert reference.output_size(cfg()) == 2 * 4
    with pytest.raises(ValueError, match="input_d") as info:
        reference.output_size(c)
    assert "input_to_hidden=True" in str(info.value)
    assert "hidden_cell=None" in str(info.value)


# -- recurrent connections against the plain loop -----------------------------------------------


HIDDEN_KINDS = ["dense", "simple_rnn", "gru", "lstm"]


@pytest.mark.parametrize("kind", HIDDEN_KINDS)
@pytest.mark.parametrize(
    "flags",
    [
        {"hidden_to_memory": True},
        {"memory_to_memory": True},
        {"hidden_to_memory": True, "memory_to_memory": True, "use_bias": True},
        {"input_to_hidden": True, "memory_to_memory": True, "theta": [3.0, 8.0]},
        {"input_to_hidden": True},
    ],
)
def test_run_matches_plain_loop(kind: str, flags: dict[str, Any]) -> None:
    act = "relu" if kind == "simple_rnn" else "tanh"
    c = cfg(hidden_cell={"type": kind, "units": 3, "activation": act}, **flags)
    w = reference.random_weights(c, 2, seed=3)
    x = inputs(2, 12, 2, seed=4)
    out, states = reference.run(c, w, x)
    ref_out, ref_states = loop_lmu(c, w, x)
    assert out.shape == (2, 12, 3)
    close(out, ref_out)
    assert len(states) == len(ref_states)
    for s, r in zip(states, ref_states, strict=True):
        close(s, r)


def test_memory_to_memory_without_hidden_cell() -> None:
    c = cfg(memory_to_memory=True, use_bias=True, discretizer="bilinear")
    w = reference.random_weights(c, 3, seed=5)
    x = inputs(3, 15, 3, seed=6)
    out, states = reference.run(c, w, x)
    ref_out, ref_states = loop_lmu(c, w, x)
    close(out, ref_out)
    close(states[0], ref_states[0])
    # and it really differs from the LTI memory
    assert np.max(np.abs(out - conv_memory(c.replace(memory_to_memory=False), w, x))) > 1e-3


def test_no_kernel_with_hidden_to_memory() -> None:
    c = cfg(
        memory_d=4,
        kernel_initializer=None,
        hidden_cell={"type": "simple_rnn", "units": 2},
        hidden_to_memory=True,
        input_d=2,
    )
    w = reference.random_weights(c, 2, seed=7)
    assert "kernel" not in w
    x = inputs(2, 9, 2)
    out, _ = reference.run(c, w, x)
    close(out, loop_lmu(c, w, x)[0])


# -- initial states and continuation -------------------------------------------------------------


CONTINUATION = [
    {},
    {"memory_to_memory": True, "use_bias": True},
    {"hidden_cell": {"type": "lstm", "units": 3}, "hidden_to_memory": True},
    {"hidden_cell": {"type": "gru", "units": 2}, "memory_to_memory": True},
    {"hidden_cell": {"type": "dense", "units": 2}, "hidden_to_memory": True},
    {"hidden_cell": {"type": "simple_rnn", "units": 2}, "input_to_hidden": True},
]


@pytest.mark.parametrize("kw", CONTINUATION)
@pytest.mark.parametrize("k", [1, 7])
def test_continuation_with_returned_states(kw: dict[str, Any], k: int) -> None:
    c = cfg(**kw)
    w = reference.random_weights(c, 2, seed=8)
    x = inputs(2, 16, 2, seed=9)
    whole, whole_states = reference.run(c, w, x)
    first, mid = reference.run(c, w, x[:, :k])
    second, end = reference.run(c, w, x[:, k:], initial_state=mid)
    close(np.concatenate([first, second], axis=1), whole, 1e-12)
    for a, b in zip(end, whole_states, strict=True):
        close(a, b, 1e-12)


def test_explicit_initial_state_against_loop() -> None:
    c = cfg(hidden_cell={"type": "lstm", "units": 3}, hidden_to_memory=True, memory_to_memory=True)
    w = reference.random_weights(c, 2, seed=10)
    x = inputs(2, 6, 2, seed=11)
    init = [RNG.normal(size=(2, n)) for n in reference.state_sizes(c)]
    out, states = reference.run(c, w, x, initial_state=init)
    ref_out, ref_states = loop_lmu(c, w, x, init=init)
    close(out, ref_out)
    for a, b in zip(states, ref_states, strict=True):
        close(a, b)
    zero_out, _ = reference.run(c, w, x)
    assert np.max(np.abs(zero_out - out)) > 1e-3  # the initial state matters


# -- each neutral hidden cell against its formula, one step --------------------------------------


def one_step(kind: str, activation: str, units: int = 3) -> tuple[Any, ...]:
    c = cfg(order=3, hidden_cell={"type": kind, "units": units, "activation": activation})
    w = reference.random_weights(c, 2, seed=13)
    x = inputs(2, 1, 2, seed=14)
    init = [RNG.normal(size=(2, n)) for n in reference.state_sizes(c)]
    out, states = reference.run(c, w, x, initial_state=init)
    # the memory after one step, by hand: m1 = Ad m0 + Bd u (per dimension)
    Ad, Bd = lmu_matrices(3, 6.0)
    u = x[:, 0] @ w["kernel"]
    m0 = init[0].reshape(2, 2, 3)
    m1 = (np.einsum("ij,bkj->bki", Ad, m0) + u[:, :, None] * Bd[:, 0]).reshape(2, 6)
    close(states[0], m1)
    return c, w, m1, init, out[:, 0], states


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_cell_formula(activation: str) -> None:
    _, w, m1, _, out, states = one_step("dense", activation)
    expected = ACT[activation](m1 @ w["hidden_kernel"] + w["hidden_bias"])
    close(out, expected)
    assert len(states) == 2
    close(states[1], expected)


@pytest.mark.parametrize("activation", ["tanh", "relu", "linear"])
def test_simple_rnn_cell_formula(activation: str) -> None:
    _, w, m1, init, out, states = one_step("simple_rnn", activation)
    expected = ACT[activation](
        m1 @ w["hidden_kernel"] + init[1] @ w["hidden_recurrent_kernel"] + w["hidden_bias"]
    )
    close(out, expected)
    close(states[1], expected)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_lstm_cell_formula(activation: str) -> None:
    n = 3
    _, w, m1, init, out, states = one_step("lstm", activation, n)
    K, R, b = w["hidden_kernel"], w["hidden_recurrent_kernel"], w["hidden_bias"]
    assert K.shape == (6, 4 * n) and R.shape == (n, 4 * n) and b.shape == (4 * n,)
    h0, c0 = init[1], init[2]
    f = ACT[activation]

    def gate(g: int) -> np.ndarray:
        sl = slice(g * n, (g + 1) * n)
        return m1 @ K[:, sl] + h0 @ R[:, sl] + b[sl]

    i_gate, f_gate, c_in, o_gate = sigmoid(gate(0)), sigmoid(gate(1)), f(gate(2)), sigmoid(gate(3))
    c1 = f_gate * c0 + i_gate * c_in
    h1 = o_gate * f(c1)
    close(out, h1)
    assert len(states) == 3
    close(states[1], h1)
    close(states[2], c1)


@pytest.mark.parametrize("activation", ["tanh", "softplus"])
def test_gru_cell_formula(activation: str) -> None:
    n = 3
    _, w, m1, init, out, states = one_step("gru", activation, n)
    K, R, b = w["hidden_kernel"], w["hidden_recurrent_kernel"], w["hidden_bias"]
    assert K.shape == (6, 3 * n) and R.shape == (n, 3 * n) and b.shape == (2, 3 * n)
    h0 = init[1]
    f = ACT[activation]

    def part(M: np.ndarray, v: np.ndarray, bias: np.ndarray, g: int) -> np.ndarray:
        sl = slice(g * n, (g + 1) * n)
        return v @ M[:, sl] + bias[sl]

    z = sigmoid(part(K, m1, b[0], 0) + part(R, h0, b[1], 0))
    r = sigmoid(part(K, m1, b[0], 1) + part(R, h0, b[1], 1))
    cand = f(part(K, m1, b[0], 2) + r * part(R, h0, b[1], 2))  # reset after the matmul
    h1 = z * h0 + (1 - z) * cand
    close(out, h1)
    assert len(states) == 2
    close(states[1], h1)


# -- native hidden cell ---------------------------------------------------------------------------


def test_native_hidden_cell_via_hidden_fn() -> None:
    units = 3
    c = cfg(hidden_cell=object(), hidden_to_memory=True, input_to_hidden=True)
    Wh = RNG.normal(size=(2 * 4 + 2, units)) * 0.3
    Uh = RNG.normal(size=(units, units)) * 0.3

    def cell(inp: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        out = np.tanh(inp @ Wh + states[0] @ Uh)
        return out, [out]

    w = {"kernel": RNG.normal(size=(2 + units, 2)) * 0.5}
    x = inputs(2, 10, 2, seed=15)
    out, states = reference.run(c, w, x, hidden_fn=cell, hidden_state_shapes=[units])
    ref_out, ref_states = loop_lmu(c, w, x, native=cell, native_states=[units])
    assert out.shape == (2, 10, units)
    close(out, ref_out)
    for a, b in zip(states, ref_states, strict=True):
        close(a, b)
    assert reference.output_size(c, native_units=units) == units
    assert reference.memory_input_size(c, 2, native_units=units) == 2 + units


def test_native_hidden_cell_errors() -> None:
    c = cfg(hidden_cell=object())
    x = inputs(1, 3, 2)
    w = {"kernel": np.ones((2, 2))}
    with pytest.raises(ValueError, match="hidden_fn"):
        reference.run(c, w, x)
    with pytest.raises(ValueError, match="native_units"):
        reference.output_size(c)
    c2 = cfg(hidden_cell=object(), hidden_to_memory=True)
    with pytest.raises(ValueError, match="hidden_state_shapes"):
        reference.run(c2, {"kernel": np.ones((5, 2))}, x, hidden_fn=lambda i, s: (i, [i]))


# -- dropout masks ------------------------------------------------------------------------------


def test_dropout_masks_against_loop() -> None:
    c = cfg(
        hidden_cell={"type": "gru", "units": 2},
        hidden_to_memory=True,
        memory_to_memory=True,
        dropout=0.5,
        recurrent_dropout=0.5,
    )
    w = reference.random_weights(c, 3, seed=16)
    x = inputs(2, 8, 3, seed=17)
    keep = np.random.default_rng(18)
    in_mask = (keep.random((2, 3 + 2)) > 0.5) / 0.5
    rec_mask = (keep.random((2, 8)) > 0.5) / 0.5
    out, _ = reference.run(c, w, x, input_mask=in_mask, recurrent_mask=rec_mask)
    ref_out, _ = loop_lmu(c, w, x, input_mask=in_mask, recurrent_mask=rec_mask)
    close(out, ref_out)
    plain, _ = reference.run(c, w, x)
    assert np.max(np.abs(plain - out)) > 1e-3
    ones, _ = reference.run(c, w, x, input_mask=np.ones((2, 5)), recurrent_mask=np.ones((2, 8)))
    close(ones, plain, 1e-14)


def test_zero_input_mask_leaves_memory_empty() -> None:
    c = cfg()
    w = reference.random_weights(c, 3)
    out, _ = reference.run(c, w, inputs(2, 5, 3), input_mask=np.zeros((2, 3)))
    assert np.all(out == 0)


# -- trained matrices in the weights -------------------------------------------------------------


def test_theta_inv_weight_overrides_config_theta() -> None:
    c = cfg(memory_d=2, theta=6.0)
    w = reference.random_weights(c, 3, seed=19)
    x = inputs(2, 20, 3)
    w2 = dict(w, theta_inv=np.array([1 / 4.0, 1 / 11.0]))
    out, _ = reference.run(c, w2, x)
    close(out, conv_memory(cfg(memory_d=2, theta=[4.0, 11.0]), w, x), 1e-10)
    w3 = dict(w, theta_inv=np.array(1 / 9.0))
    close(reference.run(c, w3, x)[0], conv_memory(cfg(theta=9.0), w, x), 1e-10)


def test_A_B_weights_override_legendre() -> None:
    c = cfg(order=3, memory_d=1, theta=5.0)
    A, B = legendre_system(3)
    A2, B2 = A * 0.9, B[:, 0] * 1.1  # B as a flat vector is reshaped
    w = reference.random_weights(c, 1, seed=20)
    x = inputs(1, 6, 1)
    out, _ = reference.run(c, dict(w, A=A2, B=B2), x)
    Ad, Bd, *_ = scipy.signal.cont2discrete(
        (A2 / 5.0, B2[:, None] / 5.0, np.eye(3), np.zeros((3, 1))), 1.0, method="zoh"
    )
    m = np.zeros(3)
    for t in range(6):
        m = Ad @ m + Bd[:, 0] * (x[0, t] @ w["kernel"])[0]
    close(out[0, -1], m)


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 3), (3,), (1, 2, 3, 3)])
def test_bad_x_rank(shape: tuple[int, ...]) -> None:
    c = cfg()
    w = reference.random_weights(c, 3)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, time, input_d\)") as info:
        reference.run(c, w, np.zeros(shape))
    assert str(shape) in str(info.value)


def test_zero_length_sequence() -> None:
    c = cfg()
    with pytest.raises(ValueError, match="time=0"):
        reference.run(c, reference.random_weights(c, 3), np.zeros((2, 0, 3)))


def test_input_d_checked() -> None:
    c = cfg(input_d=3)
    w = reference.random_weights(c, 3)
    with pytest.raises(ValueError, match="input_d=3"):
        reference.run(c, w, np.zeros((2, 4, 2)))


def test_kernel_rows_checked() -> None:
    c = cfg(hidden_cell={"type": "dense", "units": 2}, hidden_to_memory=True)
    w = reference.random_weights(c, 3)
    with pytest.raises(ValueError, match=r"kernel must have shape \(4, memory_d=2\)"):
        reference.run(c, w, np.zeros((2, 4, 2)))  # 2 + 2 features, kernel has 3 + 2 rows


def test_no_kernel_needs_memory_d_features() -> None:
    # one feature would broadcast silently over both memory dimensions
    c = cfg(memory_d=2, kernel_initializer=None)
    with pytest.raises(ValueError, match="memory_d=2"):
        reference.run(c, {}, np.ones((2, 4, 1)))


def test_bad_initial_state_shapes() -> None:
    c = cfg(hidden_cell={"type": "lstm", "units": 3})
    w = reference.random_weights(c, 2)
    x = inputs(2, 3, 2)
    good = [np.zeros((2, 8)), np.zeros((2, 3)), np.zeros((2, 3))]
    reference.run(c, w, x, initial_state=good)
    for bad in (good[:2], [np.zeros((2, 7)), *good[1:]], [np.zeros((1, 8)), *good[1:]]):
        with pytest.raises(ValueError, match="initial_state"):
            reference.run(c, w, x, initial_state=bad)
    with pytest.raises(ValueError, match="initial_state"):
        reference.run(cfg(), reference.random_weights(cfg(), 2), x, initial_state=[np.zeros(8)])


# -- weights and sizes --------------------------------------------------------------------------


CELLS: list[dict[str, Any] | None] = [
    None,
    {"type": "dense", "units": 3},
    {"type": "simple_rnn", "units": 3},
    {"type": "gru", "units": 3},
    {"type": "lstm", "units": 3},
]
GATES = {"dense": 1, "simple_rnn": 1, "gru": 3, "lstm": 4}


@pytest.mark.parametrize(
    ("cell", "h2m", "m2m", "i2h", "bias", "no_kernel"),
    [
        combo
        for combo in itertools.product(CELLS, *[[False, True]] * 5)
        if combo[0] is not None or not combo[1]  # h2m needs a cell
    ],
)
def test_random_weights_shapes_every_combination(
    cell: dict[str, Any] | None, h2m: bool, m2m: bool, i2h: bool, bias: bool, no_kernel: bool
) -> None:
    md, order, n_in = 2, 3, 4
    units = cell["units"] if cell else 0
    if no_kernel:
        n_in = md - (units if h2m else 0)
        if n_in < 1:
            md, n_in = 5, 5 - (units if h2m else 0)
    c = LMUConfig(
        memory_d=md,
        order=order,
        theta=4.0,
        hidden_cell=cell,
        hidden_to_memory=h2m,
        memory_to_memory=m2m,
        input_to_hidden=i2h,
        use_bias=bias,
        kernel_initializer=None if no_kernel else "glorot_uniform",
    )
    w = reference.random_weights(c, n_in, seed=21)
    expected: dict[str, tuple[int, ...]] = {}
    if not no_kernel:
        expected["kernel"] = (n_in + (units if h2m else 0), md)
    if m2m:
        expected["recurrent_kernel"] = (md * order, md)
    if bias:
        expected["bias"] = (md,)
    if cell is not None:
        g = GATES[cell["type"]]
        expected["hidden_kernel"] = (md * order + (n_in if i2h else 0), units * g)
        if cell["type"] != "dense":
            expected["hidden_recurrent_kernel"] = (units, units * g)
        expected["hidden_bias"] = (2, 3 * units) if cell["type"] == "gru" else (units * g,)
    assert {k: v.shape for k, v in w.items()} == expected
    assert all(v.dtype == np.float64 for v in w.values())
    # the sizes agree with the weights, and the weights run
    out_d = units if cell else md * order + (n_in if i2h else 0)
    assert reference.output_size(c, input_d=n_in) == out_d
    assert reference.hidden_output_size(c, input_d=n_in) == out_d
    assert reference.state_sizes(c) == [md * order] + (
        [] if cell is None else [units, units] if cell["type"] == "lstm" else [units]
    )
    assert reference.memory_input_size(c, n_in) == n_in + (units if h2m else 0)
    assert reference.hidden_input_size(c, n_in) == md * order + (n_in if i2h else 0)
    out, states = reference.run(c, w, inputs(2, 3, n_in))
    assert out.shape == (2, 3, out_d)
    assert [s.shape[1] for s in states] == reference.state_sizes(c)
    assert np.all(np.isfinite(out))


def test_random_weights_seeded() -> None:
    c = cfg(hidden_cell={"type": "lstm", "units": 3}, memory_to_memory=True)
    a, b = reference.random_weights(c, 2, seed=5), reference.random_weights(c, 2, seed=5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    d = reference.random_weights(c, 2, seed=6)
    assert not np.array_equal(a["kernel"], d["kernel"])
    half = reference.random_weights(c, 2, seed=5, scale=0.25)
    close(half["kernel"], a["kernel"] / 2, 1e-15)


def test_discrete_matrices_shapes_and_values() -> None:
    c = cfg(memory_d=3, theta=[2.0, 5.0, 2.0], discretizer="bilinear")
    Ad, Bd = reference.discrete_matrices(c)
    assert Ad.shape == (3, 4, 4) and Bd.shape == (3, 4)
    ref_Ad, ref_Bd = lmu_matrices(4, [2.0, 5.0, 2.0], "bilinear")
    close(Ad, ref_Ad, 1e-14)
    close(Bd, ref_Bd[:, :, 0], 1e-14)


def test_step_equals_one_step_of_run() -> None:
    c = cfg(hidden_cell={"type": "gru", "units": 2}, hidden_to_memory=True)
    w = reference.random_weights(c, 2, seed=22)
    x = inputs(3, 1, 2)
    init = [RNG.normal(size=(3, n)) for n in reference.state_sizes(c)]
    out, states = reference.step(c, w, x[:, 0], init)
    r_out, r_states = reference.run(c, w, x, initial_state=init)
    close(out, r_out[:, 0], 1e-15)
    for a, b in zip(states, r_states, strict=True):
        close(a, b, 1e-15)
