"""The projected FFT convolution and the SimpleRNN scan (hand-written backward passes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lmu_torch.recurrence as recurrence  # noqa: E402
from lmu_torch import LMU  # noqa: E402
from lmu_torch.recurrence import conv_projected_fft, simple_rnn_scan  # noqa: E402
from lmu_torch_helpers import assert_close, assert_states_close, build, reference_run  # noqa: E402


@pytest.mark.parametrize("block_bytes", [1, 200, 1 << 22], ids=["1-step", "2-steps", "1-block"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("last_only", [False, True])
def test_scan_gradcheck(
    monkeypatch: pytest.MonkeyPatch,
    n_parts: int,
    part_calls: list[int],
    block_bytes: int,
    activation: str,
    last_only: bool,
    tanh_path: Any,
) -> None:
    """Steps are stored in blocks (of one, two or all steps): the gradients cross them; the
    batch runs in one part or two; tanh through NumPy or torch."""
    monkeypatch.setattr(recurrence, "_STORE_BLOCK_BYTES", block_bytes)
    torch.manual_seed(0)
    a = torch.randn(6, 3, 4, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    R = (0.5 * torch.randn(4, 4, dtype=torch.float64)).requires_grad_()
    fn = lambda a, h0, R: simple_rnn_scan(a, h0, R, activation, last_only)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (a, h0, R))
    with torch.no_grad():  # the plain loop
        plain = fn(a, h0, R)
    assert_close(fn(a, h0, R), plain.numpy(), what="scan vs loop")
    assert set(part_calls) == {n_parts}
    assert tanh_path.used and set(tanh_path.used) == {tanh_path.numpy and activation == "tanh"}


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_scan_in_place_matches_the_scan(
    activation: str, n_parts: int, part_calls: list[int]
) -> None:
    """``consume=True``: the last output and every gradient as without it; ``a`` holds the
    outputs afterwards (a view or a non-contiguous input is left alone)."""
    torch.manual_seed(2)
    a = torch.randn(7, 3, 4, dtype=torch.float64)
    h0 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    R = (0.5 * torch.randn(4, 4, dtype=torch.float64)).requires_grad_()

    def run(consume: bool) -> tuple[torch.Tensor, ...]:
        leaf = a.clone().requires_grad_()
        own = leaf * 1.0  # a tensor of its own, as the layer passes
        h = simple_rnn_scan(own, h0, R, activation, last_only=True, consume=consume)
        h.sin().sum().backward()
        grads = (leaf.grad, h0.grad.clone(), R.grad.clone())
        h0.grad = R.grad = None
        return (h.detach(), own.detach(), *grads)

    got, want = run(True), run(False)
    for name, g, w in zip(("h_T", "a", "da", "dh0", "dR"), got, want, strict=True):
        if name == "a":
            continue
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12, msg=name)
    assert_close(got[1][-1], got[0].numpy(), what="a holds the outputs")
    assert torch.equal(want[1], a), "without consume the input is unchanged"
    assert set(part_calls) == {n_parts}
    view = a.clone().transpose(0, 1).contiguous().transpose(0, 1)  # not contiguous
    simple_rnn_scan(view.requires_grad_(), h0, R, activation, last_only=True, consume=True)
    assert torch.equal(view, a)


def test_scan_in_place_gradcheck(n_parts: int, part_calls: list[int], tanh_path: Any) -> None:
    torch.manual_seed(3)
    a = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    R = (0.5 * torch.randn(3, 3, dtype=torch.float64)).requires_grad_()

    def fn(a: torch.Tensor, h0: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        return simple_rnn_scan(a * 1.0, h0, R, "tanh", last_only=True, consume=True)

    assert torch.autograd.gradcheck(fn, (a, h0, R))
    assert set(part_calls) == {n_parts}
    assert tanh_path.used and set(tanh_path.used) == {tanh_path.numpy}


def test_tanh_array_is_offered_only_where_numpy_may_write() -> None:
    """A plain CPU float32/float64 tensor (views included) shares its memory with the array;
    anything else gets None, and torch applies the activation."""
    t = torch.zeros(3, 5)
    for view in (t, t[:, 1:], t.t()):
        arr = recurrence.tanh_array(view, "tanh")
        assert arr is not None and arr.shape == tuple(view.shape)
        np.tanh(arr + 0.5, out=arr)
        assert torch.equal(view, torch.full(view.shape, float(np.tanh(np.float32(0.5)))))
        t.zero_()
    assert recurrence.tanh_array(torch.zeros(2, dtype=torch.float64), "tanh") is not None
    assert recurrence.tanh_array(t, "relu") is None
    assert recurrence.tanh_array(torch.zeros(2, requires_grad=True), "tanh") is None
    assert recurrence.tanh_array(torch.zeros(2, dtype=torch.bfloat16), "tanh") is None
    assert recurrence.tanh_array(torch.zeros(2, dtype=torch.complex64), "tanh") is None
    assert recurrence.tanh_array(torch.zeros(2, device="meta"), "tanh") is None


@pytest.mark.parametrize("md", [1, 3])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("k", [4, 5], ids=["even-k", "odd-k"])
@pytest.mark.parametrize("one_row", [False, True], ids=["all-rows", "one-row-per-block"])
@pytest.mark.parametrize("with_x", [False, True], ids=["no-x", "x"])
def test_conv_projected_fft(
    monkeypatch: pytest.MonkeyPatch, md: int, bias: bool, k: int, one_row: bool, with_x: bool
) -> None:
    # even and odd widths; with one_row every batch row is its own block (offsets checked)
    if one_row:
        monkeypatch.setattr(recurrence, "_BLOCK_ELEMENTS", 1)
    torch.manual_seed(1)
    T, K, batch = 9, 6, 4
    u = torch.randn(batch, T, md, dtype=torch.float64, requires_grad=True)
    G = torch.randn(md, K, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(k, dtype=torch.float64, requires_grad=True) if bias else None
    x = torch.randn(batch, T, 2, dtype=torch.float64, requires_grad=True) if with_x else None
    Wx = torch.randn(2, k, dtype=torch.float64, requires_grad=True) if with_x else None
    expected = np.zeros((T, batch, k))
    un, Gn = u.detach().numpy(), G.detach().numpy()
    for t in range(T):
        for j in range(min(t + 1, K)):
            expected[t] += un[:, t - j] @ Gn[:, j]
    if b is not None:
        expected += b.detach().numpy()
    if x is not None:
        expected += (x @ Wx).detach().numpy().transpose(1, 0, 2)
    assert_close(conv_projected_fft(u, G, b, T + K - 1, x, Wx), expected, what="conv")

    def fn(u: torch.Tensor, G: torch.Tensor, b: Any, x: Any, Wx: Any) -> torch.Tensor:
        return conv_projected_fft(u, G, b, 16, x, Wx)

    assert torch.autograd.gradcheck(fn, (u, G, b, x, Wx))


def test_conv_projected_fft_takes_x_and_its_weight_together() -> None:
    u, G = torch.zeros(1, 3, 1), torch.zeros(1, 2, 4)
    with pytest.raises(ValueError, match="x and Wx together"):
        conv_projected_fft(u, G, None, 4, torch.zeros(1, 3, 2), None)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("mode", ["fft", "raw"])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("state", [False, True])
def test_layer_scan_path_vs_reference(
    activation: str, mode: str, return_sequences: bool, state: bool
) -> None:
    layer = build(
        LMU,
        input_size=2,
        memory_d=2,
        order=4,
        theta=6.5,
        hidden_cell={"type": "simple_rnn", "units": 3, "activation": activation},
        input_to_hidden=True,
        return_sequences=return_sequences,
        conv_mode=mode,
    )
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 11, 2))
    s0 = [rng.normal(size=(3, 8)), rng.normal(size=(3, 3))] if state else None
    xt = torch.tensor(x, requires_grad=True)
    st = [torch.tensor(s) for s in s0] if state else None
    out, states = layer(xt, st)
    ref_out, ref_states = reference_run(layer, x, s0)
    assert_close(out, ref_out, what="output")
    assert_states_close(states, ref_states)
    out.sum().backward()  # the hand-written backward passes run
    assert xt.grad is not None and torch.isfinite(xt.grad).all()
    assert all(p.grad is not None for p in layer.parameters() if p.requires_grad)


def test_layer_scan_path_gradcheck() -> None:
    layer = build(
        LMU,
        input_size=1,
        memory_d=1,
        order=3,
        theta=4.5,
        hidden_cell={"type": "simple_rnn", "units": 2},
        input_to_hidden=True,
        conv_mode="fft",
    )
    x = torch.randn(2, 5, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: layer(x)[0], (x,))
    names = [n for n, p in layer.named_parameters() if p.requires_grad]
    params = tuple(
        dict(layer.named_parameters())[n].detach().clone().requires_grad_() for n in names
    )

    def fn(*ps: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, dict(zip(names, ps, strict=True)), (x,))[0]

    assert torch.autograd.gradcheck(fn, params)
