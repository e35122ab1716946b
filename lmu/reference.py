"""The step-by-step LMU in NumPy: the executable spec every backend is tested against.

Weights use the canonical (keras-lmu) names and layouts:

========================  ==============================================  ==================
name                      shape                                           when
========================  ==============================================  ==================
kernel                    (input_d [+ hidden units], memory_d)            kernel_initializer
recurrent_kernel          (memory_d * order, memory_d)                    memory_to_memory
bias                      (memory_d,)                                     use_bias
theta_inv                 () or (memory_d,)                               optional (1/theta)
A, B                      (order, order), (order, 1)                      optional (continuous)
hidden_kernel             (hidden input, units * gates)                   neutral hidden cell
hidden_recurrent_kernel   (units, units * gates)                          simple_rnn/gru/lstm
hidden_bias               (units * gates,); (2, 3 * units) for gru        neutral hidden cell
========================  ==============================================  ==================

Gate order is Keras': lstm ``i, f, c, o``; gru ``z, r, h`` with the reset gate applied after
the recurrent matmul (Keras' ``reset_after=True``, the same model as torch's GRU).
The hidden cell's input is ``[m_t, x_t]`` with input_to_hidden, else ``m_t``; without a
hidden cell that is the output itself (keras-lmu's convention: ``[m_t, x_t]`` with
input_to_hidden, where ``x_t`` is the input as given, not dropped).  The memory's input is
``[x_t, h_{t-1}]`` with hidden_to_memory, else ``x_t``.  States are ``[memory, *hidden]``
(just ``[memory]`` without a hidden cell); a stateless (dense) hidden cell keeps its last
output as its state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.special

from .config import LMUConfig
from .system import discretize, legendre_system

__all__ = [
    "ACTIVATION_FUNCTIONS",
    "HiddenFn",
    "discrete_matrices",
    "hidden_input_size",
    "hidden_output_size",
    "hidden_state_sizes",
    "memory_input_size",
    "output_size",
    "random_weights",
    "run",
    "state_sizes",
    "step",
]

#: A hidden cell given as a NumPy function: (input, states) -> (output, new states).
HiddenFn = Callable[[np.ndarray, Sequence[np.ndarray]], tuple[np.ndarray, list[np.ndarray]]]

ACTIVATION_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda v: v,
    "tanh": np.tanh,
    "relu": lambda v: np.maximum(v, 0.0),
    "sigmoid": scipy.special.expit,
    "elu": lambda v: np.where(v > 0, v, np.expm1(np.minimum(v, 0.0))),
    "softplus": lambda v: np.logaddexp(v, 0.0),
    "swish": lambda v: v * scipy.special.expit(v),
}
_GATES = {"dense": 1, "simple_rnn": 1, "gru": 3, "lstm": 4}


def _units(config: LMUConfig) -> int:
    if config.hidden_cell_type in (None, "native"):
        raise ValueError("this needs a neutral hidden cell spec")
    return int(config.hidden_cell["units"])


def hidden_output_size(
    config: LMUConfig, native_units: int | None = None, input_d: int | None = None
) -> int:
    """Features the hidden part outputs per step: the layer's output size.

    Parameters
    ----------
    config : LMUConfig
    native_units : int, optional
        The output size of a native hidden cell (required for one).
    input_d : int, optional
        Input features; defaults to ``config.input_d``.  Needed only without a hidden cell
        and with input_to_hidden, where the output is ``[m_t, x_t]``.

    Returns
    -------
    int
        The hidden cell's units; without a hidden cell ``memory_d * order``, plus ``input_d``
        with input_to_hidden.

    Raises
    ------
    ValueError
        When a native cell's ``native_units``, or the needed ``input_d``, is not known.
    """
    if config.hidden_cell is None:
        size = config.memory_d * config.order
        if config.input_to_hidden:
            if input_d is None:
                input_d = config.input_d
            if input_d is None:
                raise ValueError(
                    "with hidden_cell=None and input_to_hidden=True the output is [m_t, x_t], so "
                    "its size needs input_d (got input_d=None in the call and in the config)"
                )
            size += int(input_d)
        return size
    if config.hidden_cell_type == "native":
        if native_units is None:
            raise ValueError("a native hidden cell's output size must be given (native_units)")
        return native_units
    return _units(config)


def output_size(
    config: LMUConfig, native_units: int | None = None, input_d: int | None = None
) -> int:
    """Features of the layer's output per step (see :func:`hidden_output_size`)."""
    return hidden_output_size(config, native_units, input_d)


def hidden_state_sizes(config: LMUConfig) -> list[int]:
    """Sizes of the hidden states for a neutral spec (none without a hidden cell)."""
    kind = config.hidden_cell_type
    if kind is None:
        return []
    units = _units(config)
    return [units, units] if kind == "lstm" else [units]


def state_sizes(config: LMUConfig) -> list[int]:
    """Sizes of all states, ``[memory_d * order, *hidden]``."""
    return [config.memory_d * config.order, *hidden_state_sizes(config)]


def memory_input_size(config: LMUConfig, input_d: int, native_units: int | None = None) -> int:
    """Rows of ``kernel``: input features, plus the hidden output with hidden_to_memory."""
    extra = hidden_output_size(config, native_units) if config.hidden_to_memory else 0
    return input_d + extra


def hidden_input_size(config: LMUConfig, input_d: int) -> int:
    """Features the hidden cell receives: the memory, plus the input with input_to_hidden."""
    return config.memory_d * config.order + (input_d if config.input_to_hidden else 0)


def discrete_matrices(
    config: LMUConfig, weights: Mapping[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension discrete matrices, shapes (memory_d, order, order) and (memory_d, order).

    Uses ``weights["theta_inv"]``, ``weights["A"]`` and ``weights["B"]`` when present (trained
    values), else the config's theta and the Legendre matrices.
    """
    weights = weights or {}
    A, B = legendre_system(config.order)
    A = np.asarray(weights.get("A", A), dtype=np.float64)
    B = np.asarray(weights.get("B", B), dtype=np.float64).reshape(config.order, 1)
    if "theta_inv" in weights:
        inv = np.broadcast_to(
            np.asarray(weights["theta_inv"], dtype=np.float64), (config.memory_d,)
        )
        thetas = 1.0 / inv
    else:
        thetas = np.asarray(config.thetas)
    Ads, Bds = [], []
    cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    for th in thetas:
        if float(th) not in cache:
            cache[float(th)] = discretize(A / th, B / th, 1.0, config.discretizer)
        Ads.append(cache[float(th)][0])
        Bds.append(cache[float(th)][1][:, 0])
    return np.stack(Ads), np.stack(Bds)


def _neutral_hidden(config: LMUConfig, weights: Mapping[str, Any]) -> HiddenFn:
    spec = config.hidden_cell
    kind, units = spec["type"], int(spec["units"])
    act = ACTIVATION_FUNCTIONS[spec["activation"]]
    sig = scipy.special.expit
    K = np.asarray(weights["hidden_kernel"], dtype=np.float64)
    b = np.asarray(weights["hidden_bias"], dtype=np.float64)
    R = None if kind == "dense" else np.asarray(weights["hidden_recurrent_kernel"], np.float64)

    def cell(inp: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        if kind == "dense":
            out = act(inp @ K + b)
            return out, [out]
        h = states[0]
        if kind == "simple_rnn":
            out = act(inp @ K + h @ R + b)
            return out, [out]
        if kind == "lstm":
            z = inp @ K + h @ R + b
            i, f, g, o = (z[:, k * units : (k + 1) * units] for k in range(4))
            c = sig(f) * states[1] + sig(i) * act(g)
            out = sig(o) * act(c)
            return out, [out, c]
        # gru, reset gate after the recurrent matmul
        xz = inp @ K + b[0]
        hz = h @ R + b[1]
        z = sig(xz[:, :units] + hz[:, :units])
        r = sig(xz[:, units : 2 * units] + hz[:, units : 2 * units])
        cand = act(xz[:, 2 * units :] + r * hz[:, 2 * units :])
        out = z * h + (1.0 - z) * cand
        return out, [out]

    return cell


def step(
    config: LMUConfig,
    weights: Mapping[str, Any],
    x_t: np.ndarray,
    states: Sequence[np.ndarray],
    *,
    hidden_fn: HiddenFn | None = None,
    matrices: tuple[np.ndarray, np.ndarray] | None = None,
    input_mask: np.ndarray | None = None,
    recurrent_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One LMU step.

    Parameters
    ----------
    config : LMUConfig
    weights : mapping of str to array
        See the module docstring.
    x_t : ndarray, shape (batch, input_d)
    states : list of ndarray
        ``[memory (batch, memory_d * order), *hidden states]``.
    hidden_fn : callable, optional
        Required for a native hidden cell: ``(input, states) -> (output, states)``.
    matrices : tuple, optional
        Precomputed :func:`discrete_matrices`.
    input_mask, recurrent_mask : ndarray, optional
        Dropout masks (already scaled) for the memory's input and the fed-back memory.

    Returns
    -------
    output : ndarray, shape (batch, output features)
        The hidden cell's output; without a hidden cell the memory ``m_t``, or
        ``[m_t, x_t]`` with input_to_hidden (``x_t`` as given, not dropped).
    states : list of ndarray
        ``[m_t, *hidden states]``.
    """
    md, order = config.memory_d, config.order
    Ad, Bd = matrices if matrices is not None else discrete_matrices(config, weights)
    x_t = np.asarray(x_t, dtype=np.float64)
    m = np.asarray(states[0], dtype=np.float64)
    h = [np.asarray(s, dtype=np.float64) for s in states[1:]]
    batch = x_t.shape[0]
    if m.shape != (batch, md * order):
        raise ValueError(
            f"the memory state must have shape (batch, memory_d * order) = "
            f"{(batch, md * order)} (got shape {m.shape})"
        )
    if config.hidden_to_memory and not h:
        raise ValueError(
            "hidden_to_memory needs the hidden output among the states (got no hidden state; "
            "give hidden_state_shapes for a native hidden cell)"
        )
    u_in = np.concatenate([x_t, h[0]], axis=1) if config.hidden_to_memory else x_t
    if input_mask is not None:
        u_in = u_in * input_mask
    if config.kernel_initializer is not None:
        kernel = np.asarray(weights["kernel"])
        if kernel.ndim != 2 or kernel.shape[0] != u_in.shape[1]:
            raise ValueError(
                f"kernel must have shape ({u_in.shape[1]}, memory_d={md}) for a memory input "
                f"[x, h] of {u_in.shape[1]} features (got shape {kernel.shape})"
            )
        u = u_in @ kernel
    else:
        u = u_in
    if u.shape != (batch, md):
        raise ValueError(
            f"the memory's input must have memory_d={md} features per step (got shape "
            f"{u.shape}); without a kernel (kernel_initializer=None) the input [x, h] must "
            "have memory_d features"
        )
    if config.use_bias:
        u = u + np.asarray(weights["bias"])
    if config.memory_to_memory:
        m_fb = m * recurrent_mask if recurrent_mask is not None else m
        u = u + m_fb @ np.asarray(weights["recurrent_kernel"])
    m3 = m.reshape(batch, md, order)
    m3 = np.einsum("bdj,dij->bdi", m3, Ad) + u[:, :, None] * Bd[None]
    m = m3.reshape(batch, md * order)
    h_in = np.concatenate([m, x_t], axis=1) if config.input_to_hidden else m
    if config.hidden_cell is None:
        return h_in, [m]
    if hidden_fn is None:
        if config.hidden_cell_type == "native":
            raise ValueError("a native hidden cell needs hidden_fn in the reference")
        hidden_fn = _neutral_hidden(config, weights)
    out, h = hidden_fn(h_in, h)
    return out, [m, *h]


def run(
    config: LMUConfig,
    weights: Mapping[str, Any],
    x: np.ndarray,
    initial_state: Sequence[np.ndarray] | None = None,
    *,
    hidden_fn: HiddenFn | None = None,
    hidden_state_shapes: Sequence[int] | None = None,
    input_mask: np.ndarray | None = None,
    recurrent_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Run the LMU over a sequence, one step at a time, in float64.

    Parameters
    ----------
    config : LMUConfig
    weights : mapping of str to array
        Canonical weights (see the module docstring); :func:`random_weights` makes some.
    x : ndarray, shape (batch, time, input_d)
    initial_state : list of ndarray, optional
        ``[memory, *hidden]``; zeros by default.
    hidden_fn : callable, optional
        The hidden cell for a native ``config.hidden_cell``.
    hidden_state_shapes : list of int, optional
        Hidden state sizes for a native hidden cell (for the zero initial state).
    input_mask, recurrent_mask : ndarray, optional
        Fixed dropout masks (already scaled), shapes (batch, memory input) and
        (batch, memory_d * order).

    Returns
    -------
    outputs : ndarray, shape (batch, time, output features)
        Every step (take ``[:, -1]`` for return_sequences=False).
    states : list of ndarray
        The final states.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"x must have shape (batch, time, input_d) (got shape {x.shape})")
    batch, T, features = x.shape
    if T == 0:
        raise ValueError("x must have at least one time step (got time=0)")
    if config.input_d is not None and features != config.input_d:
        raise ValueError(f"x has {features} features but the config says input_d={config.input_d}")
    if initial_state is None:
        if config.hidden_cell_type == "native":
            sizes = [config.memory_d * config.order, *(hidden_state_shapes or [])]
        else:
            sizes = state_sizes(config)
        states = [np.zeros((batch, n)) for n in sizes]
    else:
        states = [np.asarray(s, dtype=np.float64) for s in initial_state]
        if config.hidden_cell_type != "native":
            expected = [(batch, n) for n in state_sizes(config)]
            got = [s.shape for s in states]
            if got != expected:
                raise ValueError(f"initial_state must be arrays of shapes {expected} (got {got})")
    if hidden_fn is None and config.hidden_cell_type not in (None, "native"):
        hidden_fn = _neutral_hidden(config, weights)
    matrices = discrete_matrices(config, weights)
    outputs = []
    for t in range(T):
        out, states = step(
            config,
            weights,
            x[:, t],
            states,
            hidden_fn=hidden_fn,
            matrices=matrices,
            input_mask=input_mask,
            recurrent_mask=recurrent_mask,
        )
        outputs.append(out)
    return np.stack(outputs, axis=1), states


def random_weights(
    config: LMUConfig, input_d: int, seed: int | np.random.Generator | None = 0, scale: float = 0.5
) -> dict[str, np.ndarray]:
    """Random canonical weights for a config (neutral or no hidden cell), for tests.

    Parameters
    ----------
    config : LMUConfig
    input_d : int
        Input features.
    seed : int or Generator, optional
    scale : float
        Standard deviation scale of the normal draws.

    Returns
    -------
    dict of str to ndarray (float64)
    """
    rng = np.random.default_rng(seed)
    md, order = config.memory_d, config.order
    w: dict[str, np.ndarray] = {}

    def draw(*shape: int) -> np.ndarray:
        fan_in = shape[0] if len(shape) > 1 else 1
        return rng.normal(0.0, scale / np.sqrt(fan_in), size=shape)

    if config.kernel_initializer is not None:
        w["kernel"] = draw(memory_input_size(config, input_d), md)
    if config.memory_to_memory:
        w["recurrent_kernel"] = draw(md * order, md)
    if config.use_bias:
        w["bias"] = draw(md)
    kind = config.hidden_cell_type
    if kind not in (None, "native"):
        units, gates = _units(config), _GATES[str(kind)]
        w["hidden_kernel"] = draw(hidden_input_size(config, input_d), units * gates)
        if kind != "dense":
            w["hidden_recurrent_kernel"] = draw(units, units * gates)
        w["hidden_bias"] = draw(2, units * 3) if kind == "gru" else draw(units * gates)
    return w
