"""A SimpleRNN recurrence over precomputed input pre-activations, with a hand-written backward.

The hidden recurrence of a SimpleRNN cell over a linear memory is, once the memory's
contribution and the input projection are known for every step,

.. math:: h_t = f(a_t + h_{t-1} R),

with ``a`` of shape (T, batch, units) and ``R`` = ``W_hh^T``.  Run through autograd, every
step leaves an ``addmm`` and an activation node behind, and the backward pass adds one small
weight-gradient GEMM (and its accumulation) per step.  :func:`simple_rnn_scan` instead stores
the outputs, runs the backward recurrence

.. math:: g_t = (\\partial L / \\partial h_t + g_{t+1} R^T) \\odot f'(h_t)

in place into one buffer, and forms the weight gradient as a few large GEMMs (one per block
of stored steps):
``dL/dR = H_{prev}^T G``.  ``dL/da = G`` and ``dL/dh_0 = g_1 R^T``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from . import parts, workspace
from .convolution import block_elements

__all__ = ["SCAN_ACTIVATIONS", "conv_projected_fft", "simple_rnn_scan"]

#: Complex elements of one batch block of the FFT product (kept cache-sized).
_BLOCK_ELEMENTS = 1 << 18

#: Activations whose derivative is a function of the output alone.
SCAN_ACTIVATIONS = ("tanh", "relu")


def _activate_(v: torch.Tensor, activation: str, arr: np.ndarray | None = None) -> torch.Tensor:
    """``f(v)`` in place; through ``arr``, v's array from :func:`tanh_array`, where there is one."""
    if arr is not None:
        np.tanh(arr, out=arr)
        return v
    return v.tanh_() if activation == "tanh" else v.relu_()


def tanh_array(t: torch.Tensor, activation: str) -> np.ndarray | None:
    """``t`` as a NumPy array sharing its memory, for the step loops' tanh, or None.

    torch's CPU tanh took 28 us for one step of a 50-row part of case E on the benchmark
    machine (torch 2.13, float32), NumPy's 4 us (float64: 56 and 18 us), within 1.3 ulp of
    the exact value.  So the loops apply NumPy's tanh to their outputs in place where it can:
    tanh, a plain CPU float32/float64 tensor without autograd, not traced.
    """
    if (
        activation != "tanh"
        or type(t) is not torch.Tensor
        or t.device.type != "cpu"
        or t.dtype not in (torch.float32, torch.float64)
        or t.requires_grad
        or torch.compiler.is_compiling()
    ):
        return None
    try:
        return t.numpy()
    except (RuntimeError, TypeError):  # a tensor NumPy cannot see (e.g. functorch-wrapped)
        return None


def _derivative(h: torch.Tensor, activation: str, out: torch.Tensor) -> torch.Tensor:
    """``f'(a)`` written in terms of the output h = f(a), into ``out``."""
    if activation == "tanh":  # 1 - h^2
        return torch.addcmul(h.new_ones(()), h, h, value=-1, out=out)
    return torch.gt(h, 0, out=out)  # cast to out's dtype


#: Bytes per block of stored steps: the backward passes' products that sum over steps run
#: once per block, and the fused loop's scratch for them holds one block.
_STORE_BLOCK_BYTES = 4 << 20


def _step_spans(T: int, row_bytes: int, multiple: int = 1) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive step blocks of about :data:`_STORE_BLOCK_BYTES` each,
    each (but the last) a whole number of ``multiple`` steps."""
    size = max(1, _STORE_BLOCK_BYTES // max(1, row_bytes))
    size = max(multiple, size // multiple * multiple)
    return [(t0, min(T, t0 + size)) for t0 in range(0, T, size)]


def _forward_loop(
    a: torch.Tensor,
    h0: torch.Tensor,
    R: torch.Tensor,
    activation: str,
    out: torch.Tensor | None,
) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
    """The outputs of the recurrence without autograd, as blocks of steps.

    The blocks are views of ``out`` (the layer's output) where given, otherwise of storage
    from :mod:`lmu_torch.workspace` (kept mapped between calls: freed memory of this size is
    given back to the system and faulted in again page by page on the next call).
    """
    T, batch, units = a.shape
    spans = _step_spans(T, batch * units * a.element_size())
    if out is None:
        out = workspace.empty(
            T, batch, units, dtype=a.dtype, device=a.device, min_bytes=workspace.LOOP_MIN_BYTES
        )
    blocks = [out[t0:t1] for t0, t1 in spans]
    h = h0
    for (t0, _), blk in zip(spans, blocks, strict=True):
        arr = tanh_array(blk, activation)
        for i, row in enumerate(blk.unbind(0)):
            h = torch.addmm(a[t0 + i], h, R, out=row)
            _activate_(h, activation, None if arr is None else arr[i])
    return blocks, spans


class _SimpleRNNScan(torch.autograd.Function):
    """Autograd function behind :func:`simple_rnn_scan`."""

    @staticmethod
    def forward(ctx, a, h0, R, activation, last_only):  # noqa: D102
        a, h0, R = a.contiguous(), h0.contiguous(), R.contiguous()
        batch_spans = parts.batch_parts(a.shape[1], a.device)
        H = None
        if not last_only:
            H = workspace.empty(
                *a.shape, dtype=a.dtype, device=a.device, min_bytes=workspace.LOOP_MIN_BYTES
            )

        def run(i: int) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
            b0, b1 = batch_spans[i]
            out = None if H is None else H[:, b0:b1]
            return _forward_loop(a[:, b0:b1], h0[b0:b1], R, activation, out)

        results = parts.in_parts(run, len(batch_spans))
        ctx.activation, ctx.last_only, ctx.batch_spans = activation, last_only, batch_spans
        if last_only:
            # intermediates (an output must go through save_for_backward)
            ctx.blocks = [blocks for blocks, _ in results]
            ctx.save_for_backward(h0, R)
            return torch.cat([blocks[-1][-1] for blocks, _ in results])
        ctx.steps = [steps for _, steps in results]
        ctx.save_for_backward(h0, R, H)
        return H

    @staticmethod
    @once_differentiable
    def backward(ctx, dH):  # noqa: D102
        saved = ctx.saved_tensors
        if ctx.last_only:
            blocks = ctx.blocks
        else:
            H = saved[2]
            blocks = [
                [H[t0:t1, b0:b1] for t0, t1 in steps]
                for (b0, b1), steps in zip(ctx.batch_spans, ctx.steps, strict=True)
            ]
        grads = _scan_backward_parts(
            blocks,
            ctx.batch_spans,
            saved[0],
            saved[1],
            dH,
            ctx.last_only,
            ctx.activation,
            ctx.needs_input_grad,
            None if ctx.last_only else H,
        )
        return (*grads, None, None)


def _scan_backward_parts(
    blocks: list[list[torch.Tensor]],
    batch_spans: list[tuple[int, int]],
    h0: torch.Tensor,
    R: torch.Tensor,
    dH: torch.Tensor | None,
    last_only: bool,
    activation: str,
    needs: tuple[bool, ...],
    H: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """:func:`_scan_backward` for each part of the batch (``blocks[i]`` holds part i's outputs),
    in threads (:func:`lmu_torch.parts.in_parts`), and the parts' gradients put together.

    With ``H``, all outputs as one contiguous (T, batch, units) tensor, the gradient of ``R``
    is formed from it after the parts, as one GEMM over every step and row: a part's rows of
    a block of steps are not contiguous, and each of its GEMMs would copy them first.
    """
    T = sum(blk.shape[0] for blk in blocks[0])
    G = workspace.empty(T, *h0.shape, dtype=h0.dtype, device=h0.device)
    dH = None if dH is None else dH.contiguous()
    whole = H is not None and H.is_contiguous() and needs[2]
    part_needs = (*needs[:2], False, *needs[3:]) if whole else needs

    def run(i: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        b0, b1 = batch_spans[i]
        d = None if dH is None else (dH[b0:b1] if last_only else dH[:, b0:b1])
        return _scan_backward(
            blocks[i], h0[b0:b1], R, d, last_only, activation, part_needs, G[:, b0:b1]
        )

    shares = parts.in_parts(run, len(batch_spans))
    grad_h0 = torch.cat([s[0] for s in shares]) if needs[1] else None
    if whole and H is not None:  # H_prev^T G: h_0^T g_1, then the outputs h_1 .. h_{T-1}
        units = H.shape[-1]
        grad_R = h0.t() @ G[0]
        if T > 1:
            grad_R.addmm_(H[:-1].reshape(-1, units).t(), G[1:].reshape(-1, units))
    else:
        grad_R = parts.total([s[1] for s in shares]) if needs[2] else None
    return (G if needs[0] else None), grad_h0, grad_R


def _scan_backward(
    blocks: list[torch.Tensor],
    h0: torch.Tensor,
    R: torch.Tensor,
    dH: torch.Tensor | None,
    last_only: bool,
    activation: str,
    needs: tuple[bool, ...],
    G: torch.Tensor,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of the scan's ``h0`` and ``R`` given its outputs in blocks of steps and
    ``dL/dh_T`` (``last_only``) or ``dL/dH``; the gradient of ``a`` goes into ``G``."""
    T = sum(blk.shape[0] for blk in blocks)
    units = h0.shape[-1]
    Rt = R.t()
    if dH is None:
        dH = torch.zeros_like(h0 if last_only else G)
    # G first holds f' of every step, formed a block at a time; the step then multiplies in
    # the gradient reaching it: g_t = f'_t * (dL/dh_t + g_{t+1} R^T)
    t = 0
    for blk in blocks:
        _derivative(blk, activation, G[t : t + blk.shape[0]])
        t += blk.shape[0]
    buf = torch.empty_like(h0)
    G[T - 1].mul_(dH if last_only else dH[T - 1])
    for t in range(T - 2, -1, -1):
        if last_only:
            torch.mm(G[t + 1], Rt, out=buf)
        else:
            torch.addmm(dH[t], G[t + 1], Rt, out=buf)
        G[t].mul_(buf)
    grad_h0 = G[0] @ Rt if needs[1] else None
    grad_R = None
    if needs[2]:
        # H_prev^T G over all steps: h0^T g_1, then one GEMM per block
        grad_R = h0.t() @ G[0]
        t0 = 0
        for blk in blocks:
            n = blk.shape[0]
            # rows t0+1 .. t0+n of G pair with this block's outputs (the next steps)
            m = min(n, T - 1 - t0)
            if m > 0:
                grad_R.addmm_(
                    blk[:m].reshape(-1, units).t(), G[t0 + 1 : t0 + 1 + m].reshape(-1, units)
                )
            t0 += n
    return grad_h0, grad_R


class _SimpleRNNScanInPlace(torch.autograd.Function):
    """The last-output scan, run in the input's storage (see ``consume`` of the wrapper).

    The forward pass overwrites ``a`` with the outputs, so it allocates no (T, batch, units)
    tensor of its own and copies no input row into an output row (a fresh tensor of that
    size costs about as much in page faults as the arithmetic of the steps that fill it).
    """

    @staticmethod
    def forward(ctx, a, h0, R, activation):  # noqa: D102
        batch_spans = parts.batch_parts(a.shape[1], a.device)

        def run(i: int) -> torch.Tensor:
            b0, b1 = batch_spans[i]
            h = h0[b0:b1]
            part = a.detach()[:, b0:b1]
            arr = tanh_array(part, activation)
            for t, a_t in enumerate(part.unbind(0)):
                h = _activate_(a_t.addmm_(h, R), activation, None if arr is None else arr[t])
            return h

        hs = parts.in_parts(run, len(batch_spans))
        ctx.mark_dirty(a)
        ctx.set_materialize_grads(False)
        ctx.activation, ctx.batch_spans = activation, batch_spans
        ctx.save_for_backward(h0, R, a)
        return a, torch.cat(hs)

    @staticmethod
    @once_differentiable
    def backward(ctx, dH, dh):  # noqa: D102
        # dH, of the storage output, is None: simple_rnn_scan hands out only h_T
        h0, R, H = ctx.saved_tensors
        spans = ctx.batch_spans
        blocks = [[H[:, b0:b1]] for b0, b1 in spans]  # the gradient of R is formed from H
        grads = _scan_backward_parts(
            blocks, spans, h0, R, dh, True, ctx.activation, ctx.needs_input_grad, H
        )
        return (*grads, None)


def simple_rnn_scan(
    a: torch.Tensor,
    h0: torch.Tensor,
    R: torch.Tensor,
    activation: str = "tanh",
    last_only: bool = False,
    consume: bool = False,
) -> torch.Tensor:
    """All outputs of ``h_t = f(a_t + h_{t-1} @ R)``.

    Parameters
    ----------
    a : torch.Tensor
        Input pre-activations, biases included, shape (T, batch, units), time first.
    h0 : torch.Tensor
        Initial hidden state, shape (batch, units).
    R : torch.Tensor
        Recurrent weight, shape (units, units) (``W_hh^T`` in torch's layout).
    activation : {"tanh", "relu"}
    last_only : bool
        Return only ``h_T`` (batch, units) instead of every output.
    consume : bool
        With ``last_only``, the caller gives up ``a`` (used nowhere else): when it is a
        contiguous tensor of its own (not a view), the scan runs in its storage, which
        afterwards holds the outputs.

    Returns
    -------
    torch.Tensor
        The outputs ``h_1 .. h_T``, shape (T, batch, units), or ``h_T`` with ``last_only``.

    Notes
    -----
    Differentiable once with respect to ``a``, ``h0`` and ``R``.  Without gradients
    (inference, ``torch.no_grad``) or under ``torch.compile`` the plain loop runs instead.
    On the CPU the differentiable scan runs as batch parts in threads of their own
    (:mod:`lmu_torch.parts`).
    """
    if activation not in SCAN_ACTIVATIONS:
        raise ValueError(f"activation must be one of {SCAN_ACTIVATIONS} (got {activation!r})")
    needs_grad = torch.is_grad_enabled() and (
        a.requires_grad or h0.requires_grad or R.requires_grad
    )
    if needs_grad and not torch.compiler.is_compiling():
        if last_only and consume and a.is_contiguous() and a._base is None:
            return _SimpleRNNScanInPlace.apply(a, h0, R, activation)[1]
        return _SimpleRNNScan.apply(a, h0, R, activation, last_only)
    outs = []
    h = h0
    for a_t in a.unbind(0):
        h = torch.addmm(a_t, h, R)  # a new tensor: activated in place, as in the scan
        h = _activate_(h, activation, tanh_array(h, activation))
        if not last_only:
            outs.append(h)
    return h if last_only else torch.stack(outs, dim=0)


class _ConvProjectedFFT(torch.autograd.Function):
    """Autograd function behind :func:`conv_projected_fft`."""

    @staticmethod
    def forward(ctx, u, G, bias, nfft, x, Wx):  # noqa: D102
        batch, T, md = u.shape
        K, k = G.shape[1], G.shape[2]
        Uf = torch.fft.rfft(u.transpose(1, 2), n=nfft)  # (batch, md, F)
        Gf = torch.fft.rfft(G.transpose(1, 2), n=nfft)  # (md, k, F)
        out = workspace.empty(T, batch, k, dtype=u.dtype, device=u.device)
        rows = max(1, block_elements(u.device, _BLOCK_ELEMENTS) // (k * Gf.shape[-1]))
        # one product buffer for every block: a block's temporaries are megabytes, which the
        # C allocator may otherwise map afresh (page faults) every time
        Pbuf = Uf.new_empty(min(rows, batch), k, Gf.shape[-1])
        for b0 in range(0, batch, rows):
            b1 = min(batch, b0 + rows)
            if md == 1:
                P = torch.mul(Uf[b0:b1], Gf, out=Pbuf[: b1 - b0])  # (rows, k, F)
            else:
                P = torch.einsum("bdf,dkf->bkf", Uf[b0:b1], Gf)
            y = torch.fft.irfft(P, n=nfft)[..., :T].permute(2, 0, 1)
            if bias is not None:
                torch.add(y, bias, out=out[:, b0:b1])
            else:
                out[:, b0:b1].copy_(y)
            if x is not None:  # while the block is in cache; batched over its rows
                out[:, b0:b1].transpose(0, 1).baddbmm_(x[b0:b1], Wx.expand(b1 - b0, -1, -1))
        ctx.save_for_backward(Uf, Gf, x, Wx)
        ctx.dims = (T, K, nfft, rows, bias is not None)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):  # noqa: D102
        Uf, Gf, x, Wx = ctx.saved_tensors
        T, K, nfft, rows, has_bias = ctx.dims
        batch, md = Uf.shape[0], Uf.shape[1]
        need_u, need_G = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gUf = torch.empty_like(Uf) if need_u else None
        gGf = torch.zeros_like(Gf) if need_G else None
        # the gradients of bias, x and W_x read the output gradient block by block too
        grad_bias = (
            dout.new_zeros(dout.shape[-1]) if (has_bias and ctx.needs_input_grad[2]) else None
        )
        grad_x = x.new_empty(x.shape) if (x is not None and ctx.needs_input_grad[4]) else None
        grad_Wx = torch.zeros_like(Wx) if (x is not None and ctx.needs_input_grad[5]) else None
        Gc = Gf.conj().resolve_conj()
        Uc = Uf[:, 0].conj().resolve_conj() if (md == 1 and need_G) else None
        # buffers for every block (as in the forward): the output gradient's block, zero
        # past T, and the products summed into the gradient of u
        F = Gf.shape[-1]
        Dbuf = dout.new_zeros(min(rows, batch), dout.shape[-1], nfft)
        Sbuf = Gf.new_empty(min(rows, batch), dout.shape[-1], F) if need_u and md == 1 else None
        for b0 in range(0, batch, rows):
            b1 = min(batch, b0 + rows)
            Dblk = Dbuf[: b1 - b0]
            Dblk[..., :T].copy_(dout[:, b0:b1].permute(1, 2, 0))
            dOf = torch.fft.rfft(Dblk)  # (rows, k, F)
            dT = dout[:, b0:b1].transpose(0, 1)  # (rows, T, k), still in cache
            if grad_bias is not None:
                grad_bias += dT.sum((0, 1))
            if grad_x is not None:
                torch.bmm(dT, Wx.t().expand(b1 - b0, -1, -1), out=grad_x[b0:b1])
            if grad_Wx is not None:
                grad_Wx += torch.bmm(x[b0:b1].transpose(1, 2), dT).sum(0)
            if need_u:
                if md == 1 and Sbuf is not None:  # sum_k dOf conj(Gf)
                    torch.sum(torch.mul(dOf, Gc, out=Sbuf[: b1 - b0]), 1, out=gUf[b0:b1, 0])
                else:
                    gUf[b0:b1] = torch.einsum("bkf,dkf->bdf", dOf, Gc)
            if need_G:
                if md == 1 and Uc.device.type == "cpu":  # sum_b dOf conj(Uf), in place
                    for i in range(b1 - b0):
                        gGf[0].addcmul_(dOf[i], Uc[b0 + i])
                elif md == 1:  # one launch instead of one per row
                    gGf[0] += torch.einsum("bkf,bf->kf", dOf, Uc[b0:b1])
                else:
                    gGf += torch.einsum("bkf,bdf->dkf", dOf, Uf[b0:b1].conj())
        grad_u = torch.fft.irfft(gUf, n=nfft)[..., :T].transpose(1, 2) if need_u else None
        grad_G = torch.fft.irfft(gGf, n=nfft)[..., :K].transpose(1, 2) if need_G else None
        return grad_u, grad_G, grad_bias, None, grad_x, grad_Wx


def conv_projected_fft(
    u: torch.Tensor,
    G: torch.Tensor,
    bias: torch.Tensor | None,
    nfft: int,
    x: torch.Tensor | None = None,
    Wx: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal convolution of the memory input with a projected impulse response, time first.

    Parameters
    ----------
    u : torch.Tensor
        Memory input, shape (batch, T, memory_d).
    G : torch.Tensor
        Projected impulse response, shape (memory_d, K, k), K <= T.
    bias : torch.Tensor or None
        Added to every output, shape (k,).
    nfft : int
        FFT length, at least T + K - 1 (no wrap-around).
    x, Wx : torch.Tensor or None
        A term without delay, ``x[b, t] @ Wx``: x of shape (batch, T, n) and Wx (n, k) (the
        hidden cell's input from x), added block by block instead of in a pass of its own.

    Returns
    -------
    torch.Tensor
        ``out[t, b, :] = bias + x[b, t] Wx + sum_d sum_j u[b, t - j, d] G[d, j, :]``, shape
        (T, batch, k).

    Notes
    -----
    The complex product is formed a few batch rows at a time, so it stays cache-sized, and
    the result is written time-first, the layout a step loop reads.  The backward pass uses
    the adjoint convolutions (cross-correlations), again blocked over the batch.
    """
    if (x is None) != (Wx is None):
        given = "x" if x is not None else "Wx"
        raise ValueError(
            f"conv_projected_fft takes x and Wx together, or neither (got only {given})"
        )
    return _ConvProjectedFFT.apply(u, G, bias, nfft, x, Wx)
