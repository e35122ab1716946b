"""Construction, weights, errors, dtypes, devices and dropout of the torch layers."""

from __future__ import annotations

import io
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lmu_torch import LMU, LMUCell, LMUFeedforward  # noqa: E402
from lmu_torch_helpers import assert_close, build, reference_run  # noqa: E402

import lmu  # noqa: E402


def test_import_lmu_torch_does_not_import_torch() -> None:
    code = (
        "import sys, lmu, lmu_torch, lmu_torch._plugin; lmu.list_backends(); "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "lmu_torch.LMU; assert 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("kind", ["LMU", "LMUCell", "LMUFeedforward"])
def test_get_layer(kind: str) -> None:
    layer = lmu.get_layer(
        kind,
        backend="torch",
        memory_d=2,
        order=4,
        theta=5.0,
        input_d=3,
        hidden_cell={"type": "lstm", "units": 6},
    )
    assert type(layer).__name__ == kind
    assert layer.config.input_d == 3
    assert layer.output_size == 6
    x = torch.randn(2, 5, 3) if kind != "LMUCell" else torch.randn(2, 3)
    out = layer(x)
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape[-1] == 6


def test_get_layer_input_size_kwarg_and_missing() -> None:
    layer = lmu.get_layer(
        "LMU", backend="torch", memory_d=1, order=4, theta=5.0, input_size=2, batch_first=False
    )
    assert layer.input_size == 2 and not layer.batch_first
    with pytest.raises(ValueError, match="input_d=... .* or input_size"):
        lmu.get_layer("LMU", backend="torch", memory_d=1, order=4, theta=5.0)
    with pytest.raises(ValueError, match="contradicts"):
        lmu.get_layer(
            "LMU", backend="torch", memory_d=1, order=4, theta=5.0, input_d=2, input_size=3
        )


def test_parameter_names_and_shapes() -> None:
    layer = LMU(
        3,
        memory_d=2,
        order=5,
        theta=(4.0, 6.0),
        hidden_cell={"type": "gru", "units": 7},
        hidden_to_memory=True,
        memory_to_memory=True,
        use_bias=True,
    )
    shapes = {n: tuple(p.shape) for n, p in layer.named_parameters() if "." not in n}
    assert shapes == {"kernel": (3 + 7, 2), "recurrent_kernel": (10, 2), "bias": (2,)}
    assert dict(layer.named_buffers())["theta_inv"].shape == (2,)
    assert torch.allclose(layer.theta_inv, torch.tensor([0.25, 1 / 6.0]))
    trainable = LMU(
        3,
        memory_d=2,
        order=5,
        theta=4.0,
        trainable_theta=True,
        trainable_A=True,
        trainable_B=True,
        kernel_initializer="zeros",
    )
    names = dict(trainable.named_parameters())
    assert names["theta_inv"].shape == () and names["A"].shape == (5, 5)
    assert names["B"].shape == (5, 1)
    assert torch.all(trainable.kernel == 0)
    assert LMU(2, memory_d=2, order=3, theta=4.0, kernel_initializer=None).kernel is None


def test_config_and_mode_are_visible() -> None:
    layer = LMU(1, memory_d=1, order=4, theta=5.0)
    assert isinstance(layer.config, lmu.LMUConfig) and layer.mode is None
    layer(torch.randn(2, 10, 1))
    assert layer.mode == "last_state" == layer.choose_mode(10)
    seq = LMU(1, memory_d=1, order=4, theta=5.0, return_sequences=True)
    assert seq.choose_mode(10) == "raw" and seq.choose_mode(1000) == "fft"
    assert "memory_d=1" in repr(layer)


@pytest.mark.parametrize(
    "options",
    [
        {"hidden_cell": {"type": "lstm", "units": 3}, "memory_to_memory": True},
        {"hidden_cell": torch.nn.GRUCell(8, 4), "hidden_to_memory": True},
        {"hidden_cell": torch.nn.Sequential(torch.nn.Linear(8, 3), torch.nn.ReLU())},
        {"trainable_theta": True, "theta": (3.0, 5.0)},
    ],
)
def test_state_dict_round_trip(options: dict[str, Any]) -> None:
    opts = dict(memory_d=2, order=4, theta=5.0, return_sequences=True)
    opts.update(options)
    a = LMU(2, **opts)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    opts2 = dict(opts)
    if isinstance(opts.get("hidden_cell"), torch.nn.Module):
        import copy

        opts2["hidden_cell"] = copy.deepcopy(opts["hidden_cell"])
        torch.nn.init.zeros_(next(opts2["hidden_cell"].parameters()))
    b = LMU(2, **opts2)
    x = torch.randn(2, 9, 2)
    assert not torch.allclose(a(x)[0], b(x)[0])
    buf.seek(0)
    b.load_state_dict(torch.load(buf))
    torch.testing.assert_close(a(x)[0], b(x)[0], rtol=0, atol=0)


def test_native_stateless_output_size() -> None:
    class NoAttr(torch.nn.Module):
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return v[:, :3] * 2

    assert LMU(1, memory_d=1, order=4, theta=3.0, hidden_cell=NoAttr()).output_size == 3
    assert (
        LMU(1, memory_d=1, order=4, theta=3.0, hidden_cell=torch.nn.Linear(4, 6)).output_size == 6
    )
    with pytest.raises(ValueError, match="input_size must be 5"):
        LMU(
            1,
            memory_d=1,
            order=4,
            theta=3.0,
            hidden_cell=torch.nn.GRUCell(3, 2),
            input_to_hidden=True,
        )


# -- bad input -------------------------------------------------------------------------------
@pytest.fixture
def layer() -> Any:
    return LMU(3, memory_d=2, order=4, theta=5.0, hidden_cell={"type": "lstm", "units": 4})


def test_wrong_rank(layer: Any) -> None:
    with pytest.raises(
        ValueError,
        match=r"x must have shape \(batch, time, input_size=3\) "
        r"\(got shape \(2, 3\)\)",
    ):
        layer(torch.randn(2, 3))


def test_wrong_feature_size(layer: Any) -> None:
    with pytest.raises(ValueError, match=r"input_size=3 .* \(got shape \(2, 5, 4\)\)"):
        layer(torch.randn(2, 5, 4))


def test_zero_length(layer: Any) -> None:
    with pytest.raises(ValueError, match=r"at least one time step \(got shape \(2, 0, 3\)\)"):
        layer(torch.randn(2, 0, 3))


def test_state_of_wrong_shape(layer: Any) -> None:
    x = torch.randn(2, 5, 3)
    good = layer.initial_state(2)
    with pytest.raises(ValueError, match=r"state\[2\] must have shape \(2, 4\) \(got \(2, 5\)\)"):
        layer(x, (good[0], good[1], torch.zeros(2, 5)))
    with pytest.raises(ValueError, match="tuple of 3 tensors .* length 2"):
        layer(x, good[:2])
    cell = LMUCell(3, memory_d=2, order=4, theta=5.0)
    with pytest.raises(ValueError, match=r"state\[0\] must have shape \(2, 8\) \(got \(3, 8\)\)"):
        cell(torch.randn(2, 3), (torch.zeros(3, 8),))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, input_size=3\)"):
        cell(torch.randn(2, 4, 3))


@pytest.mark.parametrize("theta", [float("nan"), float("inf"), -1.0, 0.0, (1.0, float("nan"))])
def test_bad_theta(theta: Any) -> None:
    with pytest.raises(ValueError, match="theta must be"):
        LMU(1, memory_d=2, order=4, theta=theta)


def test_non_finite_trained_theta() -> None:
    layer = LMU(1, memory_d=1, order=4, theta=5.0, trainable_theta=True)
    with torch.no_grad():
        layer.theta_inv.fill_(float("nan"))
    with pytest.raises(ValueError, match=r"theta_inv must be > 0 and finite \(got nan\)"):
        layer(torch.randn(1, 3, 1))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"unknown_flag": True}, "unknown option.*unknown_flag.*allowed"),
        ({"hidden_cell": "lstm"}, "hidden_cell"),
        ({"conv_mode": "fft", "memory_to_memory": True}, "conv_mode='fft' needs a linear memory"),
        ({"dropout": 1.5}, r"dropout must be a number in \[0, 1\) \(got 1.5\)"),
        ({"kernel_initializer": "nope"}, "kernel_initializer must be one of"),
    ],
)
def test_bad_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LMU(2, memory_d=2, order=4, theta=5.0, **options)


def test_feedforward_refuses_recurrent_memory() -> None:
    with pytest.raises(ValueError, match="LMUFeedforward needs a linear memory"):
        LMUFeedforward(2, memory_d=2, order=4, theta=5.0, memory_to_memory=True)


# -- dtypes, autocast, devices -------------------------------------------------------------
@pytest.mark.parametrize("mode", ["fft", "raw", "last_state", "recurrent"])
def test_float32_close_to_float64(mode: str) -> None:
    opts = dict(
        memory_d=2,
        order=6,
        theta=20.0,
        hidden_cell={"type": "dense", "units": 3},
        conv_mode=mode,
        return_sequences=mode != "last_state",
        truncate_ir=None,
    )
    layer64 = build(LMU, 2, **opts)
    layer32 = LMU(2, **opts)
    layer32.load_state_dict({k: v.float() for k, v in layer64.state_dict().items()})
    x = torch.randn(3, 80, 2, dtype=torch.float64)
    out64, st64 = layer64(x)
    out32, st32 = layer32(x.float())
    assert out32.dtype == torch.float32 and st32[0].dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=1e-5)


def test_autocast_keeps_memory_in_float32() -> None:
    layer = LMU(
        2,
        memory_d=2,
        order=6,
        theta=20.0,
        return_sequences=True,
        hidden_cell={"type": "dense", "units": 5},
    )
    x = torch.randn(3, 50, 2)
    ref_out, ref_state = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = layer(x)
    assert state[0].dtype == torch.float32
    torch.testing.assert_close(state[0], ref_state[0], rtol=1e-5, atol=1e-6)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref_out, rtol=0.05, atol=0.05)
    out.float().sum().backward()
    assert layer.kernel.grad is not None and layer.kernel.grad.dtype == torch.float32


def test_half_precision_input_runs_memory_in_float32() -> None:
    layer = LMU(2, memory_d=1, order=4, theta=5.0).to(torch.bfloat16)
    out, state = layer(torch.randn(2, 7, 2, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 or out.dtype == torch.float32
    assert state[0].dtype == torch.float32


def test_to_moves_and_recasts_cached_system() -> None:
    layer = LMU(1, memory_d=1, order=4, theta=5.0, return_sequences=True)
    x = torch.randn(2, 100, 1)
    out32, _ = layer(x)
    layer.double()
    out64, _ = layer(x.double())
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out32, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["fft", "raw", "last_state", "recurrent"])
def test_cuda_matches_cpu(mode: str) -> None:
    opts = dict(
        memory_d=2,
        order=6,
        theta=20.0,
        hidden_cell={"type": "lstm", "units": 3},
        conv_mode=mode,
        return_sequences=True,
        trainable_theta=True,
    )
    if mode == "last_state":
        opts.update(hidden_cell={"type": "dense", "units": 3}, return_sequences=False)
    layer = build(LMU, 2, **opts)
    x = torch.randn(3, 80, 2, dtype=torch.float64)
    out, state = layer(x)
    gpu = layer.to("cuda")
    # detached: the CPU graph of the state holds theta, which .to() has moved since
    out_gpu, state_gpu = gpu(x.cuda(), tuple(s.detach().cuda() for s in state))
    out_gpu.sum().backward()  # before the move back: the graph holds the CUDA weights
    assert layer.theta_inv.grad is not None and layer.theta_inv.grad.is_cuda
    out_cpu, _ = layer.to("cpu")(x, state)
    torch.testing.assert_close(out_gpu.cpu(), out_cpu)


# -- dropout ---------------------------------------------------------------------------------
def test_dropout_masks_match_reference(monkeypatch: pytest.MonkeyPatch) -> None:
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
    )
    rng = np.random.default_rng(0)
    in_mask = (rng.random((2, 5)) > 0.4) / 0.6
    rec_mask = (rng.random((2, 8)) > 0.3) / 0.7
    calls = []

    def fixed(batch: int, dtype: torch.dtype, device: torch.device) -> Any:
        calls.append(batch)
        return torch.tensor(in_mask, dtype=dtype), torch.tensor(rec_mask, dtype=dtype)

    monkeypatch.setattr(layer, "make_dropout_masks", fixed)
    x = rng.normal(size=(2, 20, 2))
    expected, _ = reference_run(layer, x, input_mask=in_mask, recurrent_mask=rec_mask)
    out, _ = layer(torch.tensor(x))
    assert_close(out, expected)
    assert calls == [2]  # one draw per sequence


def test_dropout_only_in_training_and_fixed_over_time() -> None:
    layer = LMU(
        4,
        memory_d=4,
        order=3,
        theta=5.0,
        kernel_initializer=None,
        dropout=0.5,
        return_sequences=True,
    )
    x = torch.ones(64, 30, 4)
    layer.eval()
    assert layer.make_dropout_masks(64, torch.float32, x.device) == (None, None)
    eval_out, _ = layer(x)
    layer.train()
    out, _ = layer(x)
    dropped = out.reshape(64, 30, 4, 3).abs().sum(dim=(1, 3)) == 0  # (batch, memory_d)
    assert 0.2 < dropped.float().mean() < 0.8
    kept = ~dropped
    o4, e4 = out.reshape(64, 30, 4, 3), eval_out.reshape(64, 30, 4, 3)
    ratio = o4.permute(0, 2, 1, 3)[kept] / e4.permute(0, 2, 1, 3)[kept]
    torch.testing.assert_close(ratio, torch.full_like(ratio, 2.0))


def test_initializers() -> None:
    for name in lmu.config.INITIALIZERS:
        layer = LMU(
            3,
            memory_d=4,
            order=2,
            theta=5.0,
            kernel_initializer=name,
            use_bias=True,
            bias_initializer=name,
            memory_to_memory=True,
            recurrent_initializer=name,
        )
        assert torch.isfinite(layer.kernel).all() and torch.isfinite(layer.bias).all()
    layer = LMU(3, memory_d=4, order=2, theta=5.0, kernel_initializer=torch.nn.init.ones_)
    assert torch.all(layer.kernel == 1)
    layer = LMU(3, memory_d=4, order=2, theta=5.0, kernel_initializer="GlorotUniform")
    limit = (6 / 7) ** 0.5
    assert layer.kernel.abs().max() <= limit and layer.kernel.std() > limit / 4


def test_loaded_theta_inv_is_used_when_theta_is_fixed() -> None:
    layer = build(LMU, 1, memory_d=2, order=4, theta=5.0, return_sequences=True)
    x = np.random.default_rng(7).normal(size=(2, 30, 1))
    before, _ = layer(torch.tensor(x))
    layer.load_canonical({"theta_inv": np.array(1 / 7.5)})
    expected, _ = reference_run(layer, x)
    after, _ = layer(torch.tensor(x))
    assert_close(after, expected)
    assert not torch.allclose(before, after)
    assert layer.config.theta == 5.0  # the config keeps the constructor's value
