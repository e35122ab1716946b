"""The pool of reused CPU buffers (lmu_torch.workspace) and the layers that take from it."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from lmu_torch import LMU, recurrence, workspace  # noqa: E402
from lmu_torch.recurrence import conv_projected_fft, simple_rnn_scan  # noqa: E402
from lmu_torch_helpers import build  # noqa: E402

SHAPE = (4, 256)  # 4 KB in float32


@pytest.fixture
def pool_all(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every tensor the layers take from the workspace comes from the pool."""
    monkeypatch.setattr(workspace, "MIN_BYTES", 1)
    monkeypatch.setattr(workspace, "enabled", True)
    workspace.release()
    yield
    workspace.release()


def _take() -> torch.Tensor:
    return workspace.empty(*SHAPE, dtype=torch.float32)


def test_idle_buffer_is_handed_out_again(pool_all: None) -> None:
    a = _take()
    ptr = a.data_ptr()
    assert a.shape == SHAPE and a.dtype == torch.float32 and a.is_contiguous()
    del a
    assert _take().data_ptr() == ptr
    assert workspace.pooled_bytes() == 4 * 256 * 4


def test_buffer_in_use_is_not_handed_out(pool_all: None) -> None:
    a = _take()
    ptr_a = a.data_ptr()
    b = _take()  # a lives: a buffer of its own
    assert b.data_ptr() != ptr_a
    view = a[1:]
    del a  # its view keeps the buffer in use
    c = _take()
    assert c.data_ptr() not in (ptr_a, b.data_ptr())
    del view
    assert _take().data_ptr() == ptr_a


def test_buffer_saved_for_backward_is_in_use(pool_all: None) -> None:
    w = torch.randn(SHAPE, requires_grad=True)
    a = _take().copy_(torch.randn(SHAPE))
    ptr = a.data_ptr()
    loss = (w * a).sum()  # autograd saves a for w's gradient
    del a
    assert _take().data_ptr() != ptr
    loss.backward()  # frees the graph and with it the saved tensor
    assert _take().data_ptr() == ptr


def test_pool_stays_within_max_bytes(pool_all: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workspace, "MAX_BYTES", 2 * 4 * 256 * 4)  # two buffers
    held = [_take(), _take()]
    extra = _take()  # no room: an ordinary tensor
    assert workspace.pooled_bytes() == 2 * 4 * 256 * 4
    assert extra.data_ptr() not in [t.data_ptr() for t in held]
    del held
    other = workspace.empty(8, 256, dtype=torch.float32)  # idle buffers make room
    assert workspace.pooled_bytes() <= 2 * 4 * 256 * 4
    assert other.shape == (8, 256)


def test_plain_tensors_where_the_pool_does_not_apply(
    pool_all: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert workspace.empty(*SHAPE, dtype=torch.bfloat16).dtype == torch.bfloat16
    assert workspace.empty(0, 4, dtype=torch.float32).numel() == 0
    monkeypatch.setattr(workspace, "enabled", False)
    assert _take().shape == SHAPE
    monkeypatch.setattr(workspace, "enabled", True)
    monkeypatch.setattr(workspace, "MIN_BYTES", 1 << 30)
    assert _take().shape == SHAPE
    assert workspace.pooled_bytes() == 0


@pytest.mark.parametrize("inference", [False, True])
def test_pooled_tensor_is_no_view(pool_all: None, inference: bool) -> None:
    """A view could not be changed in place by an autograd function (the consuming scan)."""
    with torch.inference_mode(inference):
        a = _take()
    assert a._base is None and a.is_inference() == inference
    ptr = a.data_ptr()
    del a
    assert _take().data_ptr() == ptr


def test_min_bytes_pools_smaller_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workspace, "MIN_BYTES", 1 << 40)
    workspace.release()
    a = workspace.empty(*SHAPE, dtype=torch.float32, min_bytes=4096)
    ptr = a.data_ptr()
    assert workspace.pooled_bytes() == 4096
    del a
    assert workspace.empty(*SHAPE, dtype=torch.float32, min_bytes=4096).data_ptr() == ptr
    assert workspace.empty(*SHAPE, dtype=torch.float32, min_bytes=4097) is not None
    assert workspace.pooled_bytes() == 4096  # below min_bytes: a plain tensor
    workspace.release()


def _simple_rnn_fft_layer() -> LMU:
    return build(
        LMU,
        input_size=1,
        seed=3,
        memory_d=1,
        order=6,
        theta=9.5,
        hidden_cell={"type": "simple_rnn", "units": 5},
        input_to_hidden=True,
        conv_mode="fft",
    )


def test_last_output_scan_runs_in_the_pooled_pre_activations(
    pool_all: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = recurrence._SimpleRNNScanInPlace.apply

    def spy(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(recurrence._SimpleRNNScanInPlace, "apply", spy)
    layer = _simple_rnn_fft_layer()
    x = torch.randn(3, 20, 1, dtype=torch.float64)
    out, _ = layer(x)
    out.sum().backward()
    grads = [p.grad.clone() for p in layer.parameters()]
    assert calls == [1]
    layer.zero_grad()
    monkeypatch.setattr(workspace, "enabled", False)
    expected, _ = layer(x)
    expected.sum().backward()
    torch.testing.assert_close(out, expected)
    for got, want in zip(grads, [p.grad for p in layer.parameters()], strict=True):
        torch.testing.assert_close(got, want)


def _step_loop_run(hidden_to_memory: bool, return_sequences: bool) -> list[torch.Tensor]:
    layer = build(
        LMU,
        input_size=2,
        seed=4,
        memory_d=1,
        order=8,
        theta=12.5,
        hidden_cell={"type": "simple_rnn", "units": 6},
        input_to_hidden=True,
        hidden_to_memory=hidden_to_memory,
        memory_to_memory=hidden_to_memory,
        return_sequences=return_sequences,
    )
    x = torch.randn(40, 30, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    out, _ = layer(x)
    out.pow(2).sum().backward()
    return [out.detach().clone()] + [p.grad for p in layer.parameters()]  # the output: idle


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("hidden_to_memory", [True, False], ids=["fused", "scan"])
def test_step_loops_keep_their_storage_in_the_pool(
    monkeypatch: pytest.MonkeyPatch,
    n_parts: int,
    part_calls: list[int],
    hidden_to_memory: bool,
    return_sequences: bool,
) -> None:
    """The loops' per-call storage comes from the pool from LOOP_MIN_BYTES, and is reused.

    (In two parts, how many buffers a call needs depends on the threads' timing: one part
    may hand a buffer back before the other asks for one of the same size.)
    """
    monkeypatch.setattr(workspace, "enabled", False)
    expected = _step_loop_run(hidden_to_memory, return_sequences)
    monkeypatch.setattr(workspace, "enabled", True)
    monkeypatch.setattr(workspace, "MIN_BYTES", 1 << 40)
    monkeypatch.setattr(workspace, "LOOP_MIN_BYTES", 1)
    workspace.release()
    part_calls.clear()
    first = _step_loop_run(hidden_to_memory, return_sequences)
    assert part_calls and set(part_calls) == {n_parts}
    assert workspace.pooled_bytes() > 0
    held = workspace.pooled_bytes()
    second = _step_loop_run(hidden_to_memory, return_sequences)
    if n_parts == 1:
        assert workspace.pooled_bytes() == held  # the same buffers again
    workspace.release()
    for a, b, c in zip(expected, first, second, strict=True):
        torch.testing.assert_close(b, a)
        torch.testing.assert_close(c, b, rtol=0, atol=0)


def test_release_keeps_buffers_in_use_alive(pool_all: None) -> None:
    a = _take().fill_(3.0)
    workspace.release()
    assert workspace.pooled_bytes() == 0
    b = _take().fill_(5.0)
    assert a.data_ptr() != b.data_ptr()
    assert bool((a == 3.0).all())


def test_threads_get_distinct_buffers(pool_all: None) -> None:
    got: list[torch.Tensor] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        for _ in range(50):
            t = _take()
            with lock:
                got.append(t)  # all of them stay alive

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len({t.data_ptr() for t in got}) == len(got) == 200


def _fft_layer(**options: object) -> LMU:
    torch.manual_seed(0)
    return LMU(
        1,
        memory_d=2,
        order=6,
        theta=9.5,
        return_sequences=True,
        conv_mode="fft",
        **options,  # type: ignore[arg-type]
    ).double()


@pytest.mark.parametrize(
    "hidden",
    [None, {"type": "simple_rnn", "units": 5}],
    ids=["no_hidden", "simple_rnn"],
)
def test_layer_outputs_kept_across_calls_stay_intact(pool_all: None, hidden: object) -> None:
    layer = _fft_layer(hidden_cell=hidden, input_to_hidden=hidden is not None)
    x1, x2 = torch.randn(3, 20, 1, dtype=torch.float64), torch.randn(3, 20, 1, dtype=torch.float64)
    out1, _ = layer(x1)
    kept = out1.clone()
    out2, _ = layer(x2)  # out1 still alive: the second call must not write into it
    torch.testing.assert_close(out1, kept, rtol=0, atol=0)
    workspace.enabled = False
    expected2, _ = layer(x2)
    torch.testing.assert_close(out2, expected2, rtol=0, atol=0)


@pytest.mark.parametrize("last_only", [True, False])
def test_scan_and_projected_fft_gradients_with_the_pool(pool_all: None, last_only: bool) -> None:
    torch.manual_seed(1)
    T, batch, units = 12, 3, 4
    u = torch.randn(batch, T, 1, dtype=torch.float64, requires_grad=True)
    G = torch.randn(1, T, units, dtype=torch.float64, requires_grad=True)
    R = (0.3 * torch.randn(units, units, dtype=torch.float64)).requires_grad_()
    h0 = torch.randn(batch, units, dtype=torch.float64, requires_grad=True)

    def f(u: torch.Tensor, G: torch.Tensor, R: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        a = conv_projected_fft(u, G, None, 32)
        return simple_rnn_scan(a, h0, R, "tanh", last_only=last_only, consume=last_only)

    assert torch.autograd.gradcheck(f, (u, G, R, h0))
    # twice through one graph (retain_graph): the pool's buffers are still those of this graph
    out = f(u, G, R, h0)
    (g1,) = torch.autograd.grad(out.sum(), R, retain_graph=True)
    (g2,) = torch.autograd.grad(out.sum(), R)
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)


def test_compiled_layer_takes_no_pool_memory(pool_all: None) -> None:
    layer = _fft_layer()
    x = torch.randn(2, 16, 1, dtype=torch.float64)
    expected, _ = layer(x)
    workspace.release()
    out, _ = torch.compile(layer, backend="aot_eager")(x)
    torch.testing.assert_close(out, expected)
    assert workspace.pooled_bytes() == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_process_writes_its_own_copy(pool_all: None) -> None:
    a = _take().fill_(1.0)
    ctx = multiprocessing.get_context("fork")

    def child() -> None:
        a.fill_(7.0)  # the child's copy of the pool's memory

    proc = ctx.Process(target=child)
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert bool((a == 1.0).all())
