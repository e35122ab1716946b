"""Parallel evaluation of the linear memory: FFT, direct and last-step convolutions.

All functions take the memory's input ``u`` time-major per batch, shape (batch, T, memory_d),
and an impulse response ``H`` of shape (n, K, order) with n = 1 (shared by every memory
dimension) or n = memory_d, and return ``m[b, t, d, :] = sum_s H[d, t - s] u[b, s, d]``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as nnf
from torch.autograd.function import once_differentiable

import lmu.system

__all__ = ["FFT_BLOCK_ELEMENTS", "conv_fft", "conv_last", "conv_raw", "fft_length"]

#: Complex elements of one block of the FFT product (2 MB in complex64), so that the
#: product, its transform and the transposition into the output stay near the cores (on the
#: 2-core benchmark machine 2^18 beat 2^16, 2^17, 2^19 and 2^21 in both directions).
FFT_BLOCK_ELEMENTS = 1 << 18


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
    ur = u.flip(1)
    if H.shape[0] == 1:
        return torch.matmul(ur.transpose(1, 2), H[0])
    return torch.einsum("btd,dto->bdo", ur, H)


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

    The transforms run along the last, contiguous axis; the product, the transform and the
    transposition into the (batch, time, memory_d, order) output go one cache-sized block at
    a time: one batch row, a few memory dimensions and (for a long order) part of the order
    axis.  Each block is then written as rows of ``order`` contiguous values.
    """

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, H: torch.Tensor, block: int) -> torch.Tensor:  # type: ignore[override]
        batch, T, md = u.shape
        n, K, order = H.shape
        nfft = fft_length(T + K - 1)
        Uf = torch.fft.rfft(u.transpose(1, 2), n=nfft)  # (b, md, Fr)
        Hf = torch.fft.rfft(H.transpose(1, 2), n=nfft)  # (n, order, Fr)
        out = torch.empty(batch, T, md, order, dtype=u.dtype, device=u.device)
        for i, (d0, d1), (o0, o1) in _blocks(batch, md, order, Uf.shape[-1], block):
            if n == 1:
                P = Uf[i, d0:d1, None, :] * Hf[0, None, o0:o1]  # (dc, oc, Fr)
            else:
                P = Uf[i, d0:d1, None, :] * Hf[d0:d1, o0:o1]
            y = torch.fft.irfft(P, n=nfft)  # (dc, oc, nfft)
            out[i, :, d0:d1, o0:o1] = y[..., :T].permute(2, 0, 1)
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
        Uf = torch.fft.rfft(u.transpose(1, 2), n=nfft)  # (b, md, Fr)
        Hf = torch.fft.rfft(H.transpose(1, 2), n=nfft)  # (n, order, Fr)
        gu_f = torch.zeros_like(Uf) if need_u else None
        gh_f = torch.zeros_like(Hf) if need_h else None
        Uc = Uf.conj().resolve_conj() if need_h else None
        Hc = Hf.conj().resolve_conj() if need_u else None
        bufs: dict[tuple[int, int], torch.Tensor] = {}
        for i, (d0, d1), (o0, o1) in _blocks(batch, md, order, Uf.shape[-1], ctx.block):
            buf = bufs.get((d1 - d0, o1 - o0))
            if buf is None:  # zero-padded past T once; only [..., :T] is rewritten
                buf = grad.new_zeros(d1 - d0, o1 - o0, nfft)
                bufs[(d1 - d0, o1 - o0)] = buf
            buf[..., :T] = grad[i, :, d0:d1, o0:o1].permute(1, 2, 0)
            Gf = torch.fft.rfft(buf)  # (dc, oc, Fr)
            if need_u:  # sum over the order axis of Gf conj(Hf)
                Hb = Hc[0, None, o0:o1] if n == 1 else Hc[d0:d1, o0:o1]
                gu_f[i, d0:d1] += (Gf * Hb).sum(1)
            if need_h:  # sum over the batch (and, when shared, the memory dims) of Gf conj(Uf)
                corr = Gf * Uc[i, d0:d1, None, :]
                if n == 1:
                    gh_f[0, o0:o1] += corr.sum(0)
                else:
                    gh_f[d0:d1, o0:o1] += corr
        grad_u = torch.fft.irfft(gu_f, n=nfft)[..., :T].transpose(1, 2) if need_u else None
        grad_h = torch.fft.irfft(gh_f, n=nfft)[..., :K].transpose(1, 2) if need_h else None
        return grad_u, grad_h, None


def _blocks(
    batch: int, md: int, order: int, freqs: int, block: int
) -> list[tuple[int, tuple[int, int], tuple[int, int]]]:
    """``(row, (d0, d1), (o0, o1))`` blocks of about ``block`` complex products each."""
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


def conv_fft(u: torch.Tensor, H: torch.Tensor, block: int = FFT_BLOCK_ELEMENTS) -> torch.Tensor:
    """FFT convolution computed in blocks of the order axis.

    Parameters
    ----------
    u : Tensor, shape (batch, T, memory_d)
    H : Tensor, shape (n, K, order)
    block : int
        Complex elements per block of the product (bounds the transient memory).

    Returns
    -------
    Tensor, shape (batch, T, memory_d, order)
    """
    return _FFTConv.apply(u, H, block)
