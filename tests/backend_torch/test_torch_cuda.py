"""The torch layers on a CUDA device: every mode and option against lmu.reference and the CPU.

Layers are built on the CPU and moved with ``.to(device)``, as a user would, so anything that
stays behind (a cached matrix, a plan, a mask, a state) fails here. CI has no GPU, so these
tests skip there; ``benchmarks/cuda_check.sh`` runs them on a GPU machine. Setting
``LMU_TORCH_TEST_DEVICE=cpu`` runs them on the CPU, which checks the tests themselves.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lmu_torch import LMU, LMUCell, LMUFeedforward  # noqa: E402
from lmu_torch_helpers import assert_close, assert_states_close, build, reference_run  # noqa: E402
from test_torch_reference import CASES, INPUT, _case_id, _options, _random_state  # noqa: E402

import lmu  # noqa: E402

DEVICE = os.environ.get("LMU_TORCH_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="needs CUDA"
    ),
]
F64 = torch.float64
#: gradients: CPU and device sum in different orders
GRAD_TOL = 1e-9


def _on_device(t: torch.Tensor) -> None:
    assert t.device.type == torch.device(DEVICE).type, f"on {t.device}, expected {DEVICE}"


def _loss(out: torch.Tensor, seed: int) -> torch.Tensor:
    """A weighted sum with fixed random weights (made on the CPU, moved to out's device)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(out.shape, dtype=out.dtype, generator=gen).to(out.device)
    return (out * w).sum()


def _grads(layer: Any) -> dict[str, torch.Tensor]:
    return {
        n: p.grad.detach().cpu().clone() for n, p in layer.named_parameters() if p.grad is not None
    }


def _run_with_grads(
    layer: Any, x: np.ndarray, state: list[np.ndarray] | None, device: str, seed: int = 0
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
    layer.zero_grad(set_to_none=True)
    xt = torch.tensor(x).to(device)
    st = None if state is None else tuple(torch.tensor(s).to(device) for s in state)
    out, states = layer(xt, st)
    _loss(out, seed).backward()
    return out, states, _grads(layer)


def _assert_grads_close(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert set(actual) == set(expected) and expected, (sorted(actual), sorted(expected))
    for name, e in expected.items():
        assert_close(actual[name], e.numpy(), GRAD_TOL, f"grad {name}")


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_grid_on_device_matches_reference_and_cpu_gradients(case: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        layer = build(LMU, INPUT, seed=case["T"], **_options(case))
    x = np.random.default_rng(case["T"]).normal(size=(2, case["T"], INPUT))
    state = _random_state(layer, 2, 5) if case["state"] else None
    expected, expected_states = reference_run(layer, x, state)
    _, _, cpu_grads = _run_with_grads(layer, x, state, "cpu")
    layer.to(DEVICE)
    out, states, grads = _run_with_grads(layer, x, state, DEVICE)
    assert layer.mode == lmu.select_mode(layer.config, layer.hidden_stateful, case["T"])
    _on_device(out)
    for s in states:
        _on_device(s)
    assert_close(out, expected, what="output")
    assert_states_close(states, expected_states)
    _assert_grads_close(grads, cpu_grads)


FUSED = dict(
    memory_d=1,
    order=12,
    theta=30.0,
    hidden_cell={"type": "simple_rnn", "units": 6, "activation": "tanh"},
    hidden_to_memory=True,
    memory_to_memory=True,
    input_to_hidden=True,
    use_bias=True,
    return_sequences=True,
)


@pytest.mark.parametrize("T", [1, 8, 70])
def test_fused_loop_on_device(T: int, fused_calls: list[int]) -> None:
    """Case E's hand-differentiated loop: reference, CPU gradients, the plan kept on device."""
    layer = build(LMU, 2, seed=T, **FUSED)
    rng = np.random.default_rng(T)
    x = rng.normal(size=(3, T, 2))
    state = [rng.normal(0, 0.5, size=(3, n)) for n in layer.state_sizes]
    expected, expected_states = reference_run(layer, x, state)
    _, _, cpu_grads = _run_with_grads(layer, x, state, "cpu")
    layer.to(DEVICE)
    out, states, grads = _run_with_grads(layer, x, state, DEVICE)
    assert len(fused_calls) == (2 if T > 1 else 0), "the fused loop runs for T > 1 only"
    _on_device(out)
    assert_close(out, expected, what="output")
    assert_states_close(states, expected_states)
    _assert_grads_close(grads, cpu_grads)
    if T > 1:  # the kept chunk matrices moved with the weights
        for tensor in layer._fused_plan[1].__dict__.values():
            if isinstance(tensor, torch.Tensor):
                _on_device(tensor)


@pytest.mark.parametrize("memory_d", [1, 2])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_simple_rnn_over_fft_memory_on_device(memory_d: int, return_sequences: bool) -> None:
    """Case D: the projected FFT (blocked for the device) and the scan, with CPU gradients."""
    layer = build(
        LMU,
        2,
        memory_d=memory_d,
        order=16,
        theta=40.0,
        hidden_cell={"type": "simple_rnn", "units": 7},
        input_to_hidden=True,
        use_bias=True,
        conv_mode="fft",
        return_sequences=return_sequences,
    )
    x = np.random.default_rng(8).normal(size=(5, 90, 2))
    expected, expected_states = reference_run(layer, x)
    _, _, cpu_grads = _run_with_grads(layer, x, None, "cpu")
    layer.to(DEVICE)
    out, states, grads = _run_with_grads(layer, x, None, DEVICE)
    assert_close(out, expected, what="output")
    assert_states_close(states, expected_states)
    _assert_grads_close(grads, cpu_grads)


@pytest.mark.parametrize("mode", ["fft", "raw", "last_state", "recurrent"])
def test_trainable_system_on_device(mode: str) -> None:
    """theta, A and B trained on the device: the same gradients as on the CPU."""
    opts: dict[str, Any] = dict(
        memory_d=2,
        order=6,
        theta=(9.5, 20.0),
        hidden_cell={"type": "gru", "units": 3},
        conv_mode=mode,
        return_sequences=True,
        trainable_theta=True,
        truncate_ir=None,
    )
    if mode == "last_state":
        opts.update(hidden_cell={"type": "dense", "units": 3}, return_sequences=False)
    if mode == "recurrent":
        opts.update(memory_to_memory=True)
    for extra in ({}, {"trainable_A": True, "trainable_B": True, "trainable_theta": False}):
        layer = build(LMU, 2, **{**opts, **extra})
        x = np.random.default_rng(1).normal(size=(3, 40, 2))
        expected, _ = reference_run(layer, x)
        _, _, cpu_grads = _run_with_grads(layer, x, None, "cpu")
        layer.to(DEVICE)
        out, _, grads = _run_with_grads(layer, x, None, DEVICE)
        assert_close(out, expected, what=f"output {extra}")
        _assert_grads_close(grads, cpu_grads)
        assert any(n in grads for n in ("theta_inv", "A", "B"))


@pytest.mark.parametrize(
    ("mode", "T", "hidden"),
    [("fft", 2000, None), ("last_state", 2000, {"type": "dense", "units": 4})],
)
def test_long_sequences_on_device(mode: str, T: int, hidden: Any) -> None:
    """Blocked FFT and the one-contraction last state over 2000 steps."""
    layer = build(
        LMU,
        2,
        memory_d=2,
        order=32,
        theta=500.0,
        hidden_cell=hidden,
        conv_mode=mode,
        return_sequences=mode == "fft",
    )
    x = np.random.default_rng(2).normal(size=(2, T, 2))
    expected, expected_states = reference_run(layer, x)
    out, states = layer.to(DEVICE)(torch.tensor(x).to(DEVICE))
    assert_close(out, expected, what="output")
    assert_states_close(states, expected_states)


@pytest.mark.parametrize(
    ("mode", "options"),
    [
        ("fft", {"hidden_cell": {"type": "lstm", "units": 3}, "input_to_hidden": True}),
        ("raw", {"theta": (2.5, 9.0), "hidden_cell": {"type": "gru", "units": 3}}),
        ("last_state", {"hidden_cell": {"type": "dense", "units": 3}}),
        ("recurrent", {"hidden_cell": {"type": "lstm", "units": 3}, "hidden_to_memory": True}),
        ("auto", {"hidden_cell": {"type": "simple_rnn", "units": 3}, "trainable_theta": True}),
    ],
)
def test_chunked_equals_whole_on_device(mode: str, options: dict[str, Any]) -> None:
    opts = dict(memory_d=2, order=5, theta=6.5, conv_mode=mode, truncate_ir=None)
    opts.update(options)
    opts["return_sequences"] = mode != "last_state"
    layer = build(LMU, 2, **opts).to(DEVICE)
    x = torch.tensor(np.random.default_rng(0).normal(size=(3, 57, 2))).to(DEVICE)
    whole, whole_state = layer(x)
    state, outs = None, []
    for start, stop in ((0, 1), (1, 17), (17, 50), (50, 57)):
        out, state = layer(x[:, start:stop], state)
        outs.append(out)
    chunked = torch.cat(outs, 1) if layer.config.return_sequences else outs[-1]
    assert state is not None
    assert_close(chunked, whole.detach().cpu().numpy(), what="output")
    assert_states_close(state, [s.detach().cpu().numpy() for s in whole_state])


@pytest.mark.parametrize(
    "options",
    [
        {"conv_mode": "fft", "hidden_cell": {"type": "dense", "units": 5}},
        {"conv_mode": "last_state", "hidden_cell": {"type": "dense", "units": 5}},
        {"conv_mode": "raw", "hidden_cell": {"type": "lstm", "units": 5}},
        {**FUSED, "hidden_cell": {"type": "simple_rnn", "units": 5}},
    ],
    ids=["fft", "last_state", "raw-lstm", "fused"],
)
def test_float32_on_device_close_to_float64(options: dict[str, Any]) -> None:
    opts = dict(memory_d=1, order=16, theta=60.0, return_sequences=True, truncate_ir=None)
    opts.update(options)
    if opts.get("conv_mode") == "last_state":
        opts["return_sequences"] = False
    layer = build(LMU, 2, **opts)
    x = np.random.default_rng(3).normal(size=(4, 300, 2))
    expected, _ = reference_run(layer, x)
    out, _ = layer.float().to(DEVICE)(torch.tensor(x, dtype=torch.float32).to(DEVICE))
    assert out.dtype == torch.float32
    assert_close(out, expected, 1e-4, "float32 output")


def test_autocast_on_device_keeps_memory_in_float32() -> None:
    layer = LMU(
        2,
        memory_d=2,
        order=6,
        theta=20.0,
        return_sequences=True,
        hidden_cell={"type": "dense", "units": 5},
    ).to(DEVICE)
    x = torch.randn(3, 50, 2).to(DEVICE)
    ref_out, ref_state = layer(x)
    with torch.autocast(torch.device(DEVICE).type, dtype=torch.bfloat16):
        out, state = layer(x)
    assert state[0].dtype == torch.float32
    torch.testing.assert_close(state[0], ref_state[0], rtol=1e-5, atol=1e-6)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref_out, rtol=0.05, atol=0.05)
    out.float().sum().backward()
    assert layer.kernel.grad is not None and layer.kernel.grad.dtype == torch.float32
    _on_device(layer.kernel.grad)


def test_cell_streams_on_device_like_the_layer() -> None:
    opts: dict[str, Any] = dict(
        memory_d=1,
        order=16,
        theta=20.0,
        hidden_cell={"type": "simple_rnn", "units": 4},
        input_to_hidden=True,
        return_sequences=True,
    )
    layer = build(LMU, 1, **opts).to(DEVICE)
    cell = LMUCell(1, dtype=F64, **{k: v for k, v in opts.items() if k != "return_sequences"})
    cell.load_state_dict(layer.state_dict())
    cell.to(DEVICE)
    x = torch.tensor(np.random.default_rng(4).normal(size=(1, 30, 1))).to(DEVICE)
    expected, _ = layer(x)
    state, outs = None, []
    with torch.no_grad():
        for t in range(30):
            o, state = cell(x[:, t], state)
            outs.append(o)
    _on_device(outs[-1])
    assert_close(torch.stack(outs, 1), expected.detach().cpu().numpy(), what="streamed")


def test_feedforward_on_device_matches_cpu() -> None:
    layer = LMUFeedforward(3, memory_d=2, order=8, theta=12.0, dtype=F64, return_sequences=True)
    x = torch.tensor(np.random.default_rng(5).normal(size=(2, 40, 3)))
    expected = layer(x)
    expected = expected[0] if isinstance(expected, tuple) else expected
    out = layer.to(DEVICE)(x.to(DEVICE))
    out = out[0] if isinstance(out, tuple) else out
    _on_device(out)
    assert_close(out, expected.detach().numpy(), what="feedforward")


def test_dropout_on_device_trains() -> None:
    layer = build(
        LMU,
        2,
        memory_d=2,
        order=4,
        theta=5.0,
        return_sequences=True,
        hidden_cell={"type": "simple_rnn", "units": 3},
        hidden_to_memory=True,
        memory_to_memory=True,
        dropout=0.4,
        recurrent_dropout=0.3,
    ).to(DEVICE)
    x = np.random.default_rng(6).normal(size=(2, 20, 2))
    layer.train()
    out, _ = layer(torch.tensor(x).to(DEVICE))
    out.sum().backward()
    assert torch.isfinite(layer.kernel.grad).all()
    layer.eval()
    with torch.no_grad():
        out_eval, _ = layer(torch.tensor(x).to(DEVICE))
    assert not torch.allclose(out.detach(), out_eval)
    assert_close(out_eval, reference_run(layer, x)[0], what="eval output")


def test_state_dict_from_device_loads_on_cpu() -> None:
    opts = dict(memory_d=2, order=5, theta=6.5, hidden_cell={"type": "gru", "units": 3})
    layer = build(LMU, 2, trainable_theta=True, **opts).to(DEVICE)
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    cpu = LMU(2, dtype=F64, trainable_theta=True, **opts)
    cpu.load_state_dict(torch.load(buf, map_location="cpu"))
    x = torch.tensor(np.random.default_rng(7).normal(size=(2, 30, 2)))
    expected, _ = layer(x.to(DEVICE))
    out, _ = cpu(x)
    assert_close(out, expected.detach().cpu().numpy(), what="after the round trip")


@pytest.mark.slow
def test_compile_inductor_on_device() -> None:
    layer = LMU(
        1,
        memory_d=2,
        order=4,
        theta=5.0,
        return_sequences=True,
        hidden_cell={"type": "dense", "units": 3},
    ).to(DEVICE)
    x = torch.randn(2, 16, 1).to(DEVICE)
    expected, _ = layer(x)
    out, _ = torch.compile(layer)(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    _on_device(layer.kernel.grad)
