"""torch.autograd.gradcheck on small float64 configurations, theta, A and B included."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from lmu_torch import LMU  # noqa: E402
from lmu_torch.convolution import GPU_BLOCK_ELEMENTS, block_elements, conv_fft, conv_raw  # noqa: E402
from lmu_torch_helpers import build  # noqa: E402
from torch.func import functional_call  # noqa: E402

MODES = ["fft", "raw", "last_state", "recurrent"]


def _layer(mode: str, **extra: Any) -> Any:
    opts: dict[str, Any] = dict(
        memory_d=2,
        order=3,
        theta=(3.5, 6.0),
        conv_mode=mode,
        return_sequences=mode != "last_state",
        use_bias=True,
        hidden_cell={"type": "dense", "units": 2, "activation": "tanh"},
        input_to_hidden=True,
        truncate_ir=None,
    )
    if mode == "recurrent":
        opts.update(
            hidden_cell={"type": "gru", "units": 2}, hidden_to_memory=True, memory_to_memory=True
        )
    opts.update(extra)
    return build(LMU, 2, **opts)


@pytest.mark.parametrize("mode", [*MODES, "recurrent-1d"])
def test_gradcheck_inputs_and_state(mode: str) -> None:
    if mode == "recurrent-1d":  # the fused single-dimension step loop
        layer = _layer("recurrent", memory_d=1, theta=4.5)
    else:
        layer = _layer(mode)
    x = torch.randn(2, 6, 2, dtype=torch.float64, requires_grad=True)
    m0 = torch.randn(2, layer.memory_size, dtype=torch.float64, requires_grad=True)
    h0 = [torch.randn(2, n, dtype=torch.float64, requires_grad=True) for n in layer.state_sizes[1:]]

    def fn(x: torch.Tensor, m0: torch.Tensor, *h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, state = layer(x, (m0, *h))
        return (out, *state)

    assert torch.autograd.gradcheck(fn, (x, m0, *h0))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("discretizer", "which", "per_dim"),
    [
        ("zoh", "theta", True),
        ("zoh", "theta", False),
        ("zoh", "all", True),
        ("bilinear", "all", False),
        ("euler", "all", True),
    ],
)
def test_gradcheck_theta_a_b(mode: str, discretizer: str, which: str, per_dim: bool) -> None:
    theta: float | tuple[float, ...] = (3.5, 6.0) if discretizer != "euler" else (12.0, 15.0)
    if not per_dim:
        theta = theta[1]
    both = which == "all"
    layer = _layer(
        mode,
        trainable_theta=True,
        trainable_A=both,
        trainable_B=both,
        discretizer=discretizer,
        theta=theta,
    )
    x = torch.randn(2, 5, 2, dtype=torch.float64)
    params = {
        n: p.detach().clone().requires_grad_(True)
        for n, p in layer.named_parameters()
        if n in ("theta_inv", "A", "B", "kernel")
    }
    names = list(params)

    def fn(*values: torch.Tensor) -> torch.Tensor:
        out, state = functional_call(layer, dict(zip(names, values, strict=True)), (x,))
        return out.sum() + state[0].pow(2).sum()

    assert torch.autograd.gradcheck(fn, tuple(params.values()))


@pytest.mark.parametrize(
    "block", [8, 48, 1 << 17], ids=["one-pair", "two-pairs-per-memory-dim", "whole-row"]
)
@pytest.mark.parametrize("order", [1, 4, 7])
@pytest.mark.parametrize("shared", [True, False])
def test_gradcheck_blocked_fft_convolution(shared: bool, order: int, block: int) -> None:
    u = torch.randn(2, 7, 3, dtype=torch.float64, requires_grad=True)
    H = torch.randn(1 if shared else 3, 7, order, dtype=torch.float64, requires_grad=True)
    # orders are packed in pairs (an odd order leaves a last pair of one) and the transforms
    # have 15 frequencies: block 8 makes one pair per block, 48 two pairs of one memory dim
    assert torch.autograd.gradcheck(lambda u, H: conv_fft(u, H, block=block), (u, H))
    # and exactly (not just within gradcheck's tolerance) the direct convolution's gradients
    direct = conv_raw(u, H)
    blocked = conv_fft(u, H, block=block)
    torch.testing.assert_close(blocked, direct, rtol=0, atol=1e-12)
    w = torch.randn_like(direct)
    got = torch.autograd.grad((blocked * w).sum(), (u, H))
    want = torch.autograd.grad((direct * w).sum(), (u, H))
    for g, e in zip(got, want, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-12)


def test_theta_receives_gradient_in_every_parallel_mode() -> None:
    for mode in ("fft", "raw", "last_state"):
        layer = _layer(mode, trainable_theta=True)
        out, _ = layer(torch.randn(2, 9, 2, dtype=torch.float64))
        out.sum().backward()
        assert layer.theta_inv.grad is not None and torch.all(layer.theta_inv.grad != 0)


@pytest.mark.parametrize("kind", ["simple_rnn", "gru", "lstm"])
@pytest.mark.parametrize("mode", ["fft", "raw"])
def test_gradcheck_projected_hidden(kind: str, mode: str) -> None:
    layer = _layer(mode, hidden_cell={"type": kind, "units": 2}, trainable_theta=True)
    x = torch.randn(1, 5, 2, dtype=torch.float64, requires_grad=True)
    h0 = [torch.randn(1, n, dtype=torch.float64, requires_grad=True) for n in layer.state_sizes]
    keep = ("theta_inv", "hidden_cell.rnn.weight_hh_l0", "hidden_cell.rnn.bias_hh_l0")
    params = {
        n: p.detach().clone().requires_grad_(True) for n, p in layer.named_parameters() if n in keep
    }
    names = list(params)

    def fn(x: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        states, values = rest[: len(h0)], rest[len(h0) :]
        out, state = functional_call(layer, dict(zip(names, values, strict=True)), (x, states))
        return (out, *state)

    assert torch.autograd.gradcheck(fn, (x, *h0, *params.values()), fast_mode=True)


def test_blocks_are_cache_sized_on_the_cpu_only() -> None:
    """The CPU keeps the given (cache-sized) block; other devices get GPU_BLOCK_ELEMENTS."""
    assert block_elements(torch.device("cpu"), 5) == 5
    meta = torch.device("meta")
    assert block_elements(meta, 5) == GPU_BLOCK_ELEMENTS
    assert block_elements(meta, 1 << 30) == 1 << 30
