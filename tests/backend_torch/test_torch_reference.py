"""Every execution mode against lmu.reference.run (float64, ~1e-10) over a pairwise grid."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lmu_torch import LMU, LMUCell, LMUFeedforward  # noqa: E402
from lmu_torch_helpers import assert_close, assert_states_close, build, pairwise, reference_run  # noqa: E402

import lmu  # noqa: E402

INPUT = 3
HIDDEN = [
    None,
    "dense:tanh",
    "dense:relu",
    "dense:linear",
    "dense:elu",
    "simple_rnn:tanh",
    "simple_rnn:relu",
    "simple_rnn:sigmoid",
    "gru:tanh",
    "gru:softplus",
    "lstm:tanh",
    "lstm:swish",
    "native:linear",
    "native:sequential",
    "native:rnn_cell",
    "native:gru_cell",
    "native:lstm_cell",
]
PARAMS: dict[str, list[Any]] = {
    "memory_d": [1, 3],
    "order": [1, 4, 9],
    "theta": ["5.5", "12.25", "per_dim"],
    "discretizer": ["zoh", "euler", "bilinear"],
    "hidden": HIDDEN,
    "use_bias": [False, True],
    "return_sequences": [False, True],
    "input_to_hidden": [False, True],
    "hidden_to_memory": [False, True],
    "memory_to_memory": [False, True],
    "conv_mode": ["auto", "fft", "raw", "last_state", "recurrent"],
    "T": [1, 7, 33, 70],
    "state": [False, True],
}


def _stateful(hidden: str | None) -> bool:
    return hidden is not None and not hidden.startswith(("dense", "native:linear", "native:seq"))


def _repair(case: dict[str, Any]) -> dict[str, Any] | None:
    if case["hidden"] is None:
        case["input_to_hidden"] = case["hidden_to_memory"] = False
    lti = not (case["hidden_to_memory"] or case["memory_to_memory"])
    if case["conv_mode"] in ("fft", "raw", "last_state") and not lti:
        return None
    if case["conv_mode"] == "last_state" and (
        case["return_sequences"] or _stateful(case["hidden"])
    ):
        return None
    return case


CASES = pairwise(PARAMS, _repair, seed=3)


def _theta(case: dict[str, Any]) -> Any:
    md, order = case["memory_d"], case["order"]
    if case["theta"] == "per_dim":
        values = [3.7 + 2.9 * i for i in range(md)]
    else:
        values = [float(case["theta"])] * md
    if case["discretizer"] == "euler":
        bound = lmu.euler_theta_bound(order)
        values = [max(v, 1.5 * bound) for v in values]
    return tuple(values) if case["theta"] == "per_dim" else values[0]


def _hidden(case: dict[str, Any]) -> Any:
    spec = case["hidden"]
    if spec is None:
        return None
    kind, act = spec.split(":")
    n = case["memory_d"] * case["order"] + (INPUT if case["input_to_hidden"] else 0)
    if kind != "native":
        return {"type": kind, "units": 4, "activation": act}
    torch.manual_seed(1)
    module = {
        "linear": lambda: torch.nn.Linear(n, 4),
        "sequential": lambda: torch.nn.Sequential(torch.nn.Linear(n, 5), torch.nn.Tanh()),
        "rnn_cell": lambda: torch.nn.RNNCell(n, 4),
        "gru_cell": lambda: torch.nn.GRUCell(n, 4),
        "lstm_cell": lambda: torch.nn.LSTMCell(n, 4),
    }[act]()
    return module.double()


def _case_id(case: dict[str, Any]) -> str:
    flags = "".join(
        k[0]
        for k in ("use_bias", "input_to_hidden", "hidden_to_memory", "memory_to_memory")
        if case[k]
    )
    return (
        f"{case['conv_mode']}-d{case['memory_d']}o{case['order']}-{case['theta']}-"
        f"{case['discretizer']}-{case['hidden']}-{flags or 'none'}-"
        f"{'seq' if case['return_sequences'] else 'last'}-T{case['T']}"
        f"{'-state' if case['state'] else ''}"
    )


def _options(case: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "use_bias",
        "return_sequences",
        "input_to_hidden",
        "hidden_to_memory",
        "memory_to_memory",
        "conv_mode",
        "discretizer",
        "memory_d",
        "order",
    )
    opts = {k: case[k] for k in keys}
    opts.update(theta=_theta(case), hidden_cell=_hidden(case))
    if opts["conv_mode"] == "raw":
        opts["truncate_ir"] = None
    return opts


def _random_state(layer: Any, batch: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.5, size=(batch, n)) for n in layer.state_sizes]


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_layer_matches_reference(case: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        layer = build(LMU, INPUT, seed=case["T"], **_options(case))
    x = np.random.default_rng(case["T"]).normal(size=(2, case["T"], INPUT))
    state = _random_state(layer, 2, 5) if case["state"] else None
    expected, expected_states = reference_run(layer, x, state)
    out, states = layer(
        torch.tensor(x), None if state is None else tuple(torch.tensor(s) for s in state)
    )
    assert layer.mode == lmu.select_mode(layer.config, layer.hidden_stateful, case["T"])
    assert_close(out, expected, what="output")
    assert_states_close(states, expected_states)


def test_grid_covers_every_mode_and_hidden_kind() -> None:
    assert {c["conv_mode"] for c in CASES} == set(PARAMS["conv_mode"])
    assert {c["hidden"] for c in CASES} == set(HIDDEN)
    assert len(CASES) < 120


@pytest.mark.parametrize("mode", ["fft", "raw", "recurrent", "last_state"])
def test_cell_steps_match_layer(mode: str) -> None:
    opts: dict[str, Any] = dict(
        memory_d=2,
        order=5,
        theta=6.5,
        use_bias=True,
        hidden_cell={"type": "gru", "units": 3},
        input_to_hidden=True,
    )
    if mode == "recurrent":
        opts.update(hidden_to_memory=True, memory_to_memory=True)
    if mode == "last_state":
        opts["hidden_cell"] = {"type": "dense", "units": 3}
    layer = build(LMU, INPUT, conv_mode=mode, return_sequences=mode != "last_state", **opts)
    cell = LMUCell(INPUT, dtype=torch.float64, **opts)
    cell.load_state_dict(layer.state_dict())
    x = torch.randn(2, 9, INPUT, dtype=torch.float64)
    out, state = layer(x)
    cell_state = None
    outs = []
    for t in range(9):
        o, cell_state = cell(x[:, t], cell_state)
        outs.append(o)
    expect = torch.stack(outs, 1) if layer.config.return_sequences else outs[-1]
    assert_close(expect, out.detach().numpy())
    assert_states_close(cell_state, [s.detach().numpy() for s in state])
    assert cell.mode == "recurrent"


@pytest.mark.parametrize(
    ("mode", "T", "hidden"),
    [
        ("fft", 2000, None),
        ("last_state", 2000, {"type": "dense", "units": 4}),
        ("raw", 300, None),
        ("recurrent", 2000, {"type": "lstm", "units": 3}),
    ],
)
def test_long_sequences(mode: str, T: int, hidden: Any) -> None:
    opts = dict(
        memory_d=2,
        order=6,
        theta=(150.5, 700.0),
        hidden_cell=hidden,
        return_sequences=mode != "last_state",
        conv_mode=mode,
        truncate_ir=None,
    )
    if mode == "recurrent":
        opts["memory_to_memory"] = True
    layer = build(LMU, 1, **opts)
    x = np.random.default_rng(0).normal(size=(2, T, 1))
    expected, expected_states = reference_run(layer, x)
    out, states = layer(torch.tensor(x))
    assert_close(out, expected, 1e-9, "output")
    assert_states_close(states, expected_states, 1e-9)


def test_changing_lengths_between_calls() -> None:
    layer = build(
        LMU,
        2,
        memory_d=2,
        order=7,
        theta=20.5,
        return_sequences=True,
        hidden_cell={"type": "dense", "units": 3},
    )
    rng = np.random.default_rng(1)
    modes = set()
    for T in (5, 130, 1, 64, 65, 200, 5):
        x = rng.normal(size=(3, T, 2))
        expected, _ = reference_run(layer, x)
        out, _ = layer(torch.tensor(x))
        modes.add(layer.mode)
        assert_close(out, expected, what=f"T={T}")
    assert modes == {"raw", "fft"}


@pytest.mark.parametrize("hidden_to_memory", [False, True])
def test_without_input_kernel(hidden_to_memory: bool) -> None:
    opts: dict[str, Any] = dict(
        memory_d=5 if hidden_to_memory else 2,
        order=4,
        theta=7.5,
        kernel_initializer=None,
        return_sequences=True,
    )
    if hidden_to_memory:
        opts.update(hidden_cell={"type": "simple_rnn", "units": 3}, hidden_to_memory=True)
    layer = build(LMU, 2, **opts)
    assert layer.kernel is None
    x = np.random.default_rng(2).normal(size=(2, 11, 2))
    expected, expected_states = reference_run(layer, x)
    out, states = layer(torch.tensor(x))
    assert_close(out, expected)
    assert_states_close(states, expected_states)


@pytest.mark.parametrize("tol", [1e-2, 1e-4])
def test_truncated_raw_within_derived_bound(tol: float) -> None:
    """|m_t - m~_t| <= ||H[K:T]||_F ||u||_2 <= tol ||H[:T]||_F ||u||_2 (Cauchy-Schwarz)."""
    T = 400
    layer = build(
        LMU,
        1,
        memory_d=1,
        order=6,
        theta=12.0,
        kernel_initializer=None,
        return_sequences=True,
        conv_mode="raw",
        truncate_ir=tol,
    )
    x = np.random.default_rng(3).normal(size=(2, T, 1))
    expected, _ = reference_run(layer, x)
    out, _ = layer(torch.tensor(x))
    H = lmu.impulse_response(6, 12.0, T)
    K = lmu.system.truncation_length(H, tol)
    assert K < T // 2  # the truncation really happened
    err = np.linalg.norm(out.detach().numpy() - expected, axis=-1)  # (batch, T)
    bound = tol * np.linalg.norm(H) * np.linalg.norm(x[..., 0], axis=1)[:, None]
    assert np.all(err <= bound + 1e-12)
    assert err.max() > 0  # and it is not exact


@pytest.mark.parametrize("trainable", ["theta", "A", "B", "all"])
@pytest.mark.parametrize("mode", ["fft", "last_state", "recurrent"])
def test_trainable_system_matches_reference(trainable: str, mode: str) -> None:
    flags = {f"trainable_{n}": trainable in (n, "all") for n in ("theta", "A", "B")}
    layer = build(
        LMU,
        2,
        memory_d=2,
        order=5,
        theta=(4.5, 9.0),
        conv_mode=mode,
        return_sequences=mode != "last_state",
        discretizer="bilinear",
        **flags,
    )
    with torch.no_grad():
        if layer.A is not None:
            layer.A.add_(0.1 * torch.randn_like(layer.A))
        if layer.B is not None:
            layer.B.mul_(1.1)
        if flags["trainable_theta"]:
            layer.theta_inv.mul_(torch.tensor([0.9, 1.2], dtype=torch.float64))
    x = np.random.default_rng(4).normal(size=(3, 40, 2))
    state = [np.random.default_rng(5).normal(size=(3, 10))]
    expected, expected_states = reference_run(layer, x, state)
    out, states = layer(torch.tensor(x), (torch.tensor(state[0]),))
    assert_close(out, expected)
    assert_states_close(states, expected_states)


def test_feedforward_matches_lmu() -> None:
    opts = dict(
        memory_d=2,
        order=4,
        theta=5.5,
        return_sequences=True,
        hidden_cell={"type": "dense", "units": 3},
    )
    ff = build(LMUFeedforward, 2, **opts)
    x = np.random.default_rng(6).normal(size=(2, 30, 2))
    expected, _ = reference_run(ff, x)
    assert_close(ff(torch.tensor(x)), expected)
    out, state = ff.forward_with_state(torch.tensor(x))
    assert_close(out, expected)
