"""The hand-differentiated step loop (lmu_torch.fused) against autograd and lmu.reference."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lmu_torch.execution as execution  # noqa: E402
import lmu_torch.fused as fused  # noqa: E402
import lmu_torch.parts as parts  # noqa: E402
import lmu_torch.recurrence as recurrence  # noqa: E402
from lmu_torch import LMU  # noqa: E402
from lmu_torch_helpers import assert_close, assert_states_close, build, reference_run  # noqa: E402

F64 = torch.float64


def _autograd_loop(xp, x, Wx, bc, m0, h0, A, Bd, rk, kh, Wm, U, activation, keep_all):  # type: ignore[no-untyped-def]
    """The same recurrence written plainly, differentiated by autograd."""
    f = torch.tanh if activation == "tanh" else torch.relu
    c = torch.zeros(xp.shape[0], xp.shape[1], Wm.shape[1], dtype=xp.dtype)
    if x is not None:
        c = c + x @ Wx.t()
    if bc is not None:
        c = c + bc
    m, h, outs = m0, h0, []
    for t in range(xp.shape[0]):
        u = xp[t]
        if kh is not None:
            u = u + h @ kh
        if rk is not None:
            u = u + m @ rk
        m = m @ A.t() + u * Bd
        pre = m @ Wm + c[t]
        if U is not None:
            pre = pre + h @ U
        h = f(pre)
        outs.append(h)
    return (torch.stack(outs) if keep_all else h), m


FLAGS = list(itertools.product([False, True], repeat=4))
#: (x and W_x, bias) of the cell's input from outside the loop
INPUTS = [(True, True), (False, True), (True, False), (False, False)]


@pytest.mark.parametrize("chunk", [1, 3, 16], ids=["chunk1", "chunk3", "chunk16"])
@pytest.mark.parametrize("block_bytes", [1, 400, 1 << 22], ids=["1-step", "2-steps", "1-block"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize(
    ("rk", "kh", "U", "keep_all"), FLAGS, ids=["".join("x-"[not f] for f in c) for c in FLAGS]
)
def test_forward_and_every_gradient_match_autograd(
    monkeypatch: pytest.MonkeyPatch,
    part_calls: list[int],
    n_parts: int,
    chunk: int,
    block_bytes: int,
    activation: str,
    rk: bool,
    kh: bool,
    U: bool,
    keep_all: bool,
) -> None:
    monkeypatch.setattr(recurrence, "_STORE_BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(fused, "_CHUNK", chunk)
    seed = int(rk) + 2 * kh + 4 * U + 8 * keep_all
    gen = torch.Generator().manual_seed(seed)
    with_x, with_bias = INPUTS[(seed + chunk) % 4]
    T, batch, N, units = 7, 3, 5, 4

    def rand(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen, dtype=F64) * scale).requires_grad_()

    A = torch.eye(N, dtype=F64) * 0.9 + 0.05 * torch.randn(N, N, generator=gen, dtype=F64)
    Bd = torch.randn(N, generator=gen, dtype=F64)
    inputs: dict[str, Any] = dict(
        xp=rand(T, batch, 1),
        x=rand(T, batch, 2) if with_x else None,
        Wx=rand(units, 2) if with_x else None,
        bc=rand(units) if with_bias else None,
        # a zero m0 (no free response) in the 2-steps cases
        m0=rand(batch, N, scale=0.0 if block_bytes == 400 else 1.0),
        h0=rand(batch, units),
        rk=rand(N, 1, scale=0.3) if rk else None,
        kh=rand(units, 1) if kh else None,
        Wm=rand(N, units, scale=0.5),
        U=rand(units, units, scale=0.5) if U else None,
    )

    def args() -> tuple[Any, ...]:
        i = inputs
        return (i["xp"], i["x"], i["Wx"], i["bc"], i["m0"], i["h0"], A, Bd, *rest())

    def rest() -> tuple[Any, ...]:
        i = inputs
        return (i["rk"], i["kh"], i["Wm"], i["U"])

    out, m_T = fused.fused_recurrence(*args(), activation, keep_all)
    ref_out, ref_m = _autograd_loop(*args(), activation, keep_all)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m_T, ref_m, rtol=1e-12, atol=1e-12)
    # a loss on the output and on the final memory (as when chunks are chained)
    w_out = torch.randn(out.shape, generator=gen, dtype=F64)
    w_m = torch.randn(m_T.shape, generator=gen, dtype=F64)
    names = [k for k, v in inputs.items() if v is not None]
    leaves = [inputs[k] for k in names]
    got = torch.autograd.grad((out * w_out).sum() + (m_T * w_m).sum(), leaves, allow_unused=True)
    want = torch.autograd.grad(
        (ref_out * w_out).sum() + (ref_m * w_m).sum(), leaves, allow_unused=True
    )
    for name, leaf, g, e in zip(names, leaves, got, want, strict=True):
        g = torch.zeros_like(leaf) if g is None else g
        e = torch.zeros_like(leaf) if e is None else e
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10, msg=f"gradient of {name}")
    assert part_calls == [n_parts, n_parts], "forward and backward, each in that many parts"


def test_gradcheck_through_the_function(
    n_parts: int, part_calls: list[int], tanh_path: Any
) -> None:
    gen = torch.Generator().manual_seed(3)
    T, batch, N, units = 5, 2, 4, 3

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen, dtype=F64) * 0.5).requires_grad_()

    A = torch.eye(N, dtype=F64) * 0.8
    Bd = torch.randn(N, generator=gen, dtype=F64)
    leaves = (rand(T, batch, 1), rand(T, batch, 2), rand(units, 2), rand(units))
    states = (rand(batch, N), rand(batch, units))
    weights = (rand(N, 1), rand(units, 1), rand(N, units), rand(units, units))

    def fn(xp, x, Wx, bc, m0, h0, rk, kh, Wm, U):  # type: ignore[no-untyped-def]
        return fused.fused_recurrence(xp, x, Wx, bc, m0, h0, A, Bd, rk, kh, Wm, U, "tanh", True)

    assert torch.autograd.gradcheck(fn, (*leaves, *states, *weights))
    assert set(part_calls) == {n_parts}
    assert tanh_path.used and set(tanh_path.used) == {tanh_path.numpy}


def test_rejects_trainable_matrices_and_other_activations() -> None:
    A = torch.eye(3, dtype=F64, requires_grad=True)
    z = torch.zeros
    args = (z(2, 1, 1), None, None, None, z(1, 3), z(1, 2), A, z(3), None, None, z(3, 2), None)
    with pytest.raises(ValueError, match="fixed A and B"):
        fused.fused_recurrence(*args, "tanh", True)
    with pytest.raises(ValueError, match="activation must be one of"):
        fused.fused_recurrence(*args[:6], A.detach(), *args[7:], "sigmoid", True)
    with pytest.raises(ValueError, match="x and Wx together"):
        fused.fused_recurrence(
            *args[:1], z(2, 1, 1), *args[2:6], A.detach(), *args[7:], "tanh", True
        )


LAYER_CASES = [
    dict(hidden="simple_rnn", h2m=True, m2m=True, i2h=True, seq=True),
    dict(hidden="simple_rnn", h2m=True, m2m=False, i2h=False, seq=False),
    dict(hidden="simple_rnn", h2m=False, m2m=True, i2h=True, seq=False),
    dict(hidden="dense", h2m=True, m2m=True, i2h=True, seq=True),
    dict(hidden="dense", h2m=False, m2m=True, i2h=False, seq=False),
]


def _layer(case: dict[str, Any], seed: int = 0, **extra: Any) -> Any:
    return build(
        LMU,
        2,
        seed=seed,
        memory_d=1,
        order=6,
        theta=7.5,
        hidden_cell={"type": case["hidden"], "units": 5, "activation": "tanh"},
        hidden_to_memory=case["h2m"],
        memory_to_memory=case["m2m"],
        input_to_hidden=case["i2h"],
        return_sequences=case["seq"],
        **extra,
    )


@pytest.mark.parametrize(
    "case", LAYER_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items())
)
def test_layer_uses_the_fused_loop_and_matches_reference(
    case: dict[str, Any], fused_calls: list[int]
) -> None:
    layer = _layer(case)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 40, 2))
    state = [rng.normal(0, 0.5, size=(3, n)) for n in layer.state_sizes]
    expected, expected_states = reference_run(layer, x, state)
    out, states = layer(torch.tensor(x), tuple(torch.tensor(s) for s in state))
    assert fused_calls, "the fused loop was not used"
    assert layer.mode == "recurrent"
    assert_close(out, expected, what="output")
    assert_states_close(states, expected_states)


@pytest.mark.parametrize(
    "case", LAYER_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items())
)
def test_layer_gradients_match_the_autograd_loop(
    case: dict[str, Any], fused_calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every parameter's gradient, and the initial states', against the autograd step loop."""
    x = torch.randn(3, 30, 2, dtype=F64, generator=torch.Generator().manual_seed(2))

    def grads(use_fused: bool) -> dict[str, torch.Tensor]:
        if not use_fused:
            monkeypatch.setattr(execution, "_can_fuse", lambda *a: False)
        layer = _layer(case, seed=4)
        s0 = [torch.full((3, n), 0.1, dtype=F64, requires_grad=True) for n in layer.state_sizes]
        out, states = layer(x, tuple(s0))
        loss = out.pow(2).sum() + states[0].sin().sum()  # the final memory feeds the loss too
        loss.backward()
        got = {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}
        got.update(
            {
                f"state{i}": torch.zeros_like(s) if s.grad is None else s.grad
                for i, s in enumerate(s0)
            }
        )
        return got

    fused_grads = grads(True)
    assert fused_calls
    plain = grads(False)
    assert len(fused_calls) == 1, "the comparison run must not use the fused loop"
    assert set(fused_grads) == set(plain)
    for name, g in fused_grads.items():
        torch.testing.assert_close(g, plain[name], rtol=1e-10, atol=1e-12, msg=name)


def test_chunked_training_equals_whole(fused_calls: list[int]) -> None:
    """Gradients through a state carried across two chunks equal those of one call."""
    case = LAYER_CASES[0]
    x = torch.randn(2, 24, 2, dtype=F64, generator=torch.Generator().manual_seed(5))

    def grads(chunks: int) -> dict[str, torch.Tensor]:
        layer = _layer(case, seed=6)
        state = None
        outs = []
        for part in x.chunk(chunks, dim=1):
            out, state = layer(part, state)
            outs.append(out)
        torch.cat(outs, dim=1).pow(2).sum().backward()
        return {n: p.grad for n, p in layer.named_parameters() if p.grad is not None}

    whole, chunked = grads(1), grads(3)
    assert len(fused_calls) == 4
    for name, g in whole.items():
        torch.testing.assert_close(chunked[name], g, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize(
    "extra",
    [dict(dropout=0.3), dict(recurrent_dropout=0.3), dict(trainable_theta=True)],
    ids=["dropout", "recurrent_dropout", "trainable_theta"],
)
def test_falls_back_where_it_does_not_apply(extra: dict[str, Any], fused_calls: list[int]) -> None:
    layer = _layer(LAYER_CASES[0], **extra)
    layer.train()
    out, _ = layer(torch.randn(2, 10, 2, dtype=F64))
    out.sum().backward()
    assert not fused_calls


def test_float32_is_as_accurate_as_the_plain_loop(
    fused_calls: list[int], monkeypatch: pytest.MonkeyPatch, tanh_path: Any
) -> None:
    """Chunks, folded weights and the FFT gradient lose no more float32 accuracy than autograd."""
    x = torch.randn(4, 600, 2, dtype=F64, generator=torch.Generator().manual_seed(7))

    def run(dtype: torch.dtype, fuse: bool) -> list[torch.Tensor]:
        layer = build(
            LMU,
            2,
            seed=8,
            memory_d=1,
            order=32,
            theta=300.0,
            hidden_cell={"type": "simple_rnn", "units": 16, "activation": "tanh"},
            hidden_to_memory=True,
            memory_to_memory=True,
            input_to_hidden=True,
        ).to(dtype)
        with monkeypatch.context() as m:
            if not fuse:
                m.setattr(execution, "_can_fuse", lambda *a: False)
            out, _ = layer(x.to(dtype))
        out.pow(2).sum().backward()
        return [out.detach()] + [p.grad for _, p in sorted(layer.named_parameters())]

    exact = run(F64, False)
    fused = run(torch.float32, True)
    plain = run(torch.float32, False)
    assert len(fused_calls) == 1
    assert tanh_path.used and set(tanh_path.used) == {tanh_path.numpy}
    for i, e in enumerate(exact):
        scale = e.abs().max().item()
        err_fused = (fused[i].to(F64) - e).abs().max().item() / scale
        err_plain = (plain[i].to(F64) - e).abs().max().item() / scale
        assert err_fused <= 10 * err_plain + 1e-6, (i, err_fused, err_plain)


def test_chunk_matrices_are_kept_until_a_weight_changes(fused_calls: list[int]) -> None:
    """The layer keeps the chunk matrices between calls, and remakes them after any update."""
    layer = _layer(LAYER_CASES[0], seed=9)
    x = torch.randn(2, 20, 2, dtype=F64, generator=torch.Generator().manual_seed(9))
    layer(x)
    plan = layer._fused_plan[1]
    with torch.no_grad():
        layer(x)
    assert layer._fused_plan[1] is plan, "unchanged weights: the same matrices"
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(x)[0].pow(2).sum().backward()
    opt.step()  # in place: the weights' versions change
    out, _ = layer(x)
    assert layer._fused_plan[1] is not plan
    expected, _ = reference_run(layer, x.numpy())
    assert_close(out, expected, what="after an optimiser step")
    for name in ("recurrent_kernel", "hidden_cell.rnn.weight_ih_l0"):
        plan = layer._fused_plan[1]
        with torch.no_grad():
            layer.get_parameter(name).mul_(0.5)
        out, _ = layer(x)
        assert layer._fused_plan[1] is not plan, name
        assert_close(out, reference_run(layer, x.numpy())[0], what=f"after scaling {name}")
    assert len(fused_calls) == 6


def test_single_steps_take_the_plain_loop(fused_calls: list[int]) -> None:
    """One step (streaming) is cheaper without the chunk machinery; longer inputs fuse."""
    layer = _layer(LAYER_CASES[0], seed=10)
    x = torch.randn(2, 1, 2, dtype=F64, generator=torch.Generator().manual_seed(10))
    out, _ = layer(x)
    assert not fused_calls
    assert_close(out, reference_run(layer, x.numpy())[0], what="one step")
    layer(torch.cat([x, x], dim=1))
    assert fused_calls


def test_parts_restore_the_thread_count_and_raise_a_worker_error(
    monkeypatch: pytest.MonkeyPatch, two_threads: None
) -> None:
    """The batch parts run in threads; afterwards torch's thread count is what it was."""
    threads = torch.get_num_threads()
    layer = _layer(LAYER_CASES[0], seed=11)
    x = torch.randn(40, 12, 2, dtype=F64, generator=torch.Generator().manual_seed(11))
    assert len(parts.batch_parts(40, x.device)) == 2
    out, _ = layer(x)
    assert torch.get_num_threads() == threads
    assert_close(out, reference_run(layer, x.numpy())[0], what="two parts")
    out.pow(2).sum().backward()
    assert torch.get_num_threads() == threads
    real = fused._forward_part

    def failing(*args: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("part failed")
        return real(*args)

    monkeypatch.setattr(fused, "_forward_part", failing)
    with pytest.raises(RuntimeError, match="part failed"):
        layer(x)
    assert torch.get_num_threads() == threads


def test_loops_of_several_threads_run_at_once(two_threads: None) -> None:
    """Two threads training at once: both right, and the thread count restored at the end."""
    threads = torch.get_num_threads()
    layers = [_layer(LAYER_CASES[0], seed=13 + i) for i in range(2)]
    xs = [
        torch.randn(40, 30, 2, dtype=F64, generator=torch.Generator().manual_seed(i))
        for i in (1, 2)
    ]
    expected = []
    for layer, x in zip(layers, xs, strict=True):
        out, _ = layer(x)
        out.pow(2).sum().backward()
        expected.append([out.detach()] + [p.grad.clone() for p in layer.parameters()])
        layer.zero_grad()
    got: list[Any] = [None, None]
    errors: list[BaseException] = []

    def train(i: int) -> None:
        try:
            for _ in range(3):
                layers[i].zero_grad()
                out, _ = layers[i](xs[i])
                out.pow(2).sum().backward()
            got[i] = [out.detach()] + [p.grad.clone() for p in layers[i].parameters()]
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    workers = [threading.Thread(target=train, args=(i,)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors
    for g, e in zip(got, expected, strict=True):
        for a, b in zip(g, e, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.get_num_threads() == threads


def test_parts_keep_inference_mode(two_threads: None, part_calls: list[int]) -> None:
    """Tensors made in inference mode are written in the parts' threads too."""
    layer = _layer(LAYER_CASES[0], seed=12)
    x = torch.randn(40, 9, 2, dtype=F64, generator=torch.Generator().manual_seed(12))
    with torch.inference_mode():
        out, state = layer(x)
    assert part_calls == [2]
    assert_close(out, reference_run(layer, x.numpy())[0], what="inference mode")


def test_parts_follow_the_threads_and_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert parts.batch_parts(100, cpu) == [(0, 100)]
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert parts.batch_parts(100, cpu) == [(0, 50), (50, 100)]
    assert parts.batch_parts(31, cpu) == [(0, 31)]  # fewer than 2 x MIN_PART_ROWS rows
    assert parts.batch_parts(100, torch.device("meta")) == [(0, 100)]  # CPU only
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a setting of this thread
        assert parts.batch_parts(100, cpu) == [(0, 100)]
    monkeypatch.setattr(parts, "MAX_PARTS", 1)
    assert parts.batch_parts(100, cpu) == [(0, 100)]
