"""Parallel evaluation of the linear memory: FFT, direct and last-step convolutions.

All functions take the memory's input ``u`` time-major per batch, shape (batch, T, memory_d),
and an impulse response ``H`` of shape (n, K, order) with n = 1 (shared by every memory
dimension) or n = memory_d, and return ``m[b, t, d, :] = sum_s H[d, t - s] u[b, s, d]``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as nnf
from torch.autograd.function import once_differentiable

import lmu.system

from . import workspace

__all__ = [
    "FFT_BLOCK_ELEMENTS",
    "GPU_BLOCK_ELEMENTS",
    "block_elements",
    "conv_fft",
    "conv_last",
    "conv_raw",
    "fft_length",
]

#: Complex elements of one block of the FFT product (2 MB in complex64), so that the
#: product, its transform and the transposition into the output stay near the cores (on the
#: 2-core benchmark machine, with orders packed in pairs, 2^17 and 2^18 tie and 2^15, 2^16
#: and 2^19 are slower in both directions).
FFT_BLOCK_ELEMENTS = 1 << 18

#: Complex elements of one block on a GPU (64 MB in complex64). There is no cache to stay in
#: there: blocks only bound the transient memory, and fewer blocks launch fewer kernels (case
#: B on an H100: 61 ms per train step with the CPU's blocks).
GPU_BLOCK_ELEMENTS = 1 << 23


def block_elements(device: torch.device, cpu: int) -> int:
    """Elements per block of a blocked product: ``cpu`` on the CPU, larger on a GPU."""
    return cpu if device.type == "cpu" else max(cpu, GPU_BLOCK_ELEMENTS)


def fft_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (fast FFT sizes); see :func:`lmu.system.fft_length`."""
    return lmu.system.fft_length(n, (2, 3, 5))


def conv_last(u: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """The final memory only: one contraction of u with the reversed impulse response.

    Parameters
    ----------
    u : Tensor, shape (batch, T, memory_d)
    H : Tensor, shape (n, T, order)

    Returns
    -------
    Tensor, shape (batch, memory_d, order)
    """
    batch, T, md = u.shape
    if H.shape[0] == 1:  # one matrix product over every (batch row, memory dim)
        rows = u.transpose(1, 2).reshape(batch * md, T)
        return (rows @ H[0].flip(0)).reshape(batch, md, H.shape[2])
    return torch.einsum("btd,dto->bdo", u, H.flip(1))


def conv_raw(u: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """Direct causal convolution (``conv1d``), H possibly shorter than the sequence.

    Returns
    -------
    Tensor, shape (batch, T, memory_d, order)
    """
    batch, T, md = u.shape
    n, K, order = H.shape
    kernel = H.flip(1).transpose(1, 2)  # (n, order, K)
    if n == 1:
        inp = u.transpose(1, 2).reshape(batch * md, 1, T)
        out = nnf.conv1d(nnf.pad(inp, (K - 1, 0)), kernel.reshape(order, 1, K))
    else:
        inp = u.transpose(1, 2)
        out = nnf.conv1d(nnf.pad(inp, (K - 1, 0)), kernel.reshape(md * order, 1, K), groups=md)
    return out.reshape(batch, md, order, T).permute(0, 3, 1, 2)


class _FFTConv(torch.autograd.Function):
    """Blocked FFT convolution with a hand-written backward that saves only u and H.

    Orders ``2p`` and ``2p + 1`` of the impulse response are packed into one complex
    sequence, ``H[..., 2p] + i H[..., 2p + 1]``.  As u is real, one complex transform then
    convolves two orders at once, and its real and imaginary parts are the two memories,
    which lie side by side in the output too: the transposition from the transforms' time
    axis into the (batch, time, memory_d, order) output moves pairs of values, about twice
    as fast as moving single ones.  The product, the transform and the transposition go one
    cache-sized block at a time: one batch row, a few memory dimensions and (for a long
    order) part of the pairs.

    The backward uses the same packing: with ``g`` the packed output gradient and ``h`` the
    packed impulse response, the real part of the correlation ``sum_t g[t] conj(h[t - s])``
    sums the two orders' contributions to the gradient of ``u[s]``, and ``sum_t g[t] u[t - k]``
    packs the gradients of ``H[k, 2p]`` and ``H[k, 2p + 1]``.
    """

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, H: torch.Tensor, block: int) -> torch.Tensor:  # type: ignore[override]
        batch, T, md = u.shape
        n, K, order = H.shape
        nfft = fft_length(T + K - 1)
        Uf = torch.fft.fft(u.transpose(1, 2), n=nfft)  # (b, md, nfft)
        Hz = _packed_spectrum(H, nfft)  # (n, pairs, nfft)
        out = workspace.empty(batch, T, md, order, dtype=u.dtype, device=u.device)
        blocks = _blocks(batch, md, Hz.shape[1], nfft, block)
        prod = _scratch(Hz, blocks, nfft)
        for i, (d0, d1), (p0, p1) in blocks:
            hz = Hz[0, None, p0:p1] if n == 1 else Hz[d0:d1, p0:p1]
            shape = (d1 - d0, p1 - p0, nfft)
            P = torch.mul(Uf[i, d0:d1, None, :], hz, out=_view(prod, shape))
            y = torch.fft.ifft(P)  # (dc, pc, nfft)
            yr = torch.view_as_real(y)[:, :, :T]  # (dc, pc, T, 2)
            for dst, src in _pair_spans(out[i, :, d0:d1], yr, p0, p1, order):
                dst.copy_(src.permute(2, 0, 1, 3))
        ctx.save_for_backward(u, H)
        ctx.block = block
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        u, H = ctx.saved_tensors
        batch, T, md = u.shape
        n, K, order = H.shape
        nfft = fft_length(T + K - 1)
        need_u, need_h = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        Uf = torch.fft.fft(u.transpose(1, 2), n=nfft)  # (b, md, nfft)
        Hz = _packed_spectrum(H, nfft)  # (n, pairs, nfft)
        gu_f = torch.zeros_like(Uf) if need_u else None
        gh_z = torch.zeros_like(Hz) if need_h else None
        Uc = Uf.conj().resolve_conj() if need_h else None
        Hc = Hz.conj().resolve_conj() if need_u else None
        bufs: dict[tuple[int, int], torch.Tensor] = {}
        blocks = _blocks(batch, md, Hz.shape[1], nfft, ctx.block)
        prod = _scratch(Hz, blocks, nfft)
        for i, (d0, d1), (p0, p1) in blocks:
            buf = bufs.get((d1 - d0, p1 - p0))
            if buf is None:  # zero past T once; only [:, :, :T] is rewritten
                buf = Hz.new_zeros(d1 - d0, p1 - p0, nfft)
                bufs[(d1 - d0, p1 - p0)] = buf
            bufr = torch.view_as_real(buf)[:, :, :T]  # (dc, pc, T, 2)
            for src, dst in _pair_spans(grad[i, :, d0:d1], bufr, p0, p1, order):
                dst.copy_(src.permute(1, 2, 0, 3))
            Gz = torch.fft.fft(buf)  # packed pairs of the output gradient's spectrum
            if need_u:  # the real part of sum_p ifft(Gz conj(Hz)) is the sum over orders
                hc = Hc[0, None, p0:p1] if n == 1 else Hc[d0:d1, p0:p1]
                gu_f[i, d0:d1] += torch.mul(Gz, hc, out=_view(prod, Gz.shape)).sum(1)
            if need_h:  # ifft(Gz conj(Uf)) packs the gradients of orders 2p and 2p + 1
                corr = torch.mul(Gz, Uc[i, d0:d1, None, :], out=_view(prod, Gz.shape))
                if n == 1:
                    gh_z[0, p0:p1] += corr.sum(0)
                else:
                    gh_z[d0:d1, p0:p1] += corr
        grad_u = None
        if need_u:
            grad_u = torch.fft.ifft(gu_f)[..., :T].real.transpose(1, 2)
        grad_h = None
        if need_h:
            gh = torch.view_as_real(torch.fft.ifft(gh_z)[..., :K])  # (n, pairs, K, 2)
            grad_h = gh.transpose(1, 2).reshape(n, K, -1)[..., :order]
        return grad_u, grad_h, None


def _scratch(like: torch.Tensor, blocks: list[Any], nfft: int) -> torch.Tensor:
    """A flat buffer for the largest block's (dc, pc, nfft) temporaries.

    The blocks' temporaries are megabytes each; one buffer per call, reused by every block,
    keeps them out of the C allocator, which may otherwise map (and fault in) fresh memory
    for each of them.
    """
    most = max((d1 - d0) * (p1 - p0) for _, (d0, d1), (p0, p1) in blocks) * nfft
    return like.new_empty(most)


def _view(buf: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """The first elements of the flat ``buf`` as a contiguous tensor of ``shape``."""
    return buf[: math.prod(shape)].view(shape)


def _packed_spectrum(H: torch.Tensor, nfft: int) -> torch.Tensor:
    """Spectra of ``H[..., 2p] + i H[..., 2p + 1]``, shape (n, pairs, nfft)."""
    n, K, order = H.shape
    Hp = nnf.pad(H, (0, order % 2)).unflatten(-1, (-1, 2))  # (n, K, pairs, 2)
    Hz = torch.view_as_complex(Hp.transpose(1, 2).contiguous())  # (n, pairs, K)
    return torch.fft.fft(Hz, n=nfft)


def _pair_spans(
    rows: torch.Tensor, packed: torch.Tensor, p0: int, p1: int, order: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Matching views of ``rows`` and ``packed`` that cover the pairs p0..p1.

    ``rows`` is (T, dc, order) in the output's layout and ``packed`` (dc, pc, T, 2), the real
    view of the pairs' time series.  Whole pairs match as (T, dc, pairs, 2) and
    (dc, pairs, T, 2).  When the order is odd, the last pair has one real column, which
    matches alone.  (Whatever the unused imaginary column holds in the backward's reused
    buffer, it cannot reach a gradient: it meets zero imaginary parts of H in the gradient of
    u, and it lands in the dropped padding order of the gradient of H.)
    """
    whole = min(p1, order // 2)
    spans = []
    if whole > p0:
        rows_whole = rows[..., 2 * p0 : 2 * whole].unflatten(-1, (whole - p0, 2))
        spans.append((rows_whole, packed[:, : whole - p0]))
    if p1 > whole:  # odd order: the last pair's real part only
        spans.append((rows[..., 2 * whole :, None], packed[:, whole - p0 :, :, :1]))
    return spans


def _blocks(
    batch: int, md: int, order: int, freqs: int, block: int
) -> list[tuple[int, tuple[int, int], tuple[int, int]]]:
    """``(row, (d0, d1), (o0, o1))`` blocks of about ``block`` complex products each.

    ``order`` is the length of the axis split in spans (o0, o1): for the FFT, the pairs.
    """
    oc = _even_split(order, max(1, block // max(1, freqs)))
    dc = _even_split(md, max(1, block // max(1, oc * freqs)))
    d_spans = [(d, min(md, d + dc)) for d in range(0, md, dc)]
    o_spans = [(o, min(order, o + oc)) for o in range(0, order, oc)]
    return [(i, ds, os) for i in range(batch) for ds in d_spans for os in o_spans]


def _even_split(total: int, most: int) -> int:
    """The part size that splits ``total`` into the fewest parts of at most ``most``, evenly."""
    most = max(1, min(total, most))
    count = -(-total // most)
    return -(-total // count)


def conv_fft(u: torch.Tensor, H: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """FFT convolution computed in blocks of the order axis.

    Parameters
    ----------
    u : Tensor, shape (batch, T, memory_d)
    H : Tensor, shape (n, K, order)
    block : int, optional
        Complex elements per block of the product (bounds the transient memory); by default
        :data:`FFT_BLOCK_ELEMENTS` on the CPU and :data:`GPU_BLOCK_ELEMENTS` on a GPU.

    Returns
    -------
    Tensor, shape (batch, T, memory_d, order)
    """
    if block is None:
        block = block_elements(u.device, FFT_BLOCK_ELEMENTS)
    return _FFTConv.apply(u, H, block)
