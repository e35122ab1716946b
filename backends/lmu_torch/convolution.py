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

#: Complex elements of one block of the FFT product; bounds the transient memory.
FFT_BLOCK_ELEMENTS = 1 << 21


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

    The transforms run along the last, contiguous axis ((batch, memory_d, order, time)
    layout); blocks of the order axis bound the complex intermediates, and each block is
    transposed once into the (batch, time, memory_d, order) output.
    """

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, H: torch.Tensor, block: int) -> torch.Tensor:  # type: ignore[override]
        batch, T, md = u.shape
        n, K, order = H.shape
        nfft = fft_length(T + K - 1)
        Uf = torch.fft.rfft(u.transpose(1, 2), n=nfft)[:, :, None, :]  # (b, md, 1, Fr)
        Hf = torch.fft.rfft(H.transpose(1, 2), n=nfft)  # (n, order, Fr)
        out = torch.empty(batch, T, md, order, dtype=u.dtype, device=u.device)
        step = _block_rows(block, batch * md * Uf.shape[-1], order)
        for o0 in range(0, order, step):
            o1 = min(order, o0 + step)
            y = torch.fft.irfft(Uf * Hf[None, :, o0:o1], n=nfft)  # (b, md, oc, nfft)
            out[:, :, :, o0:o1] = y[..., :T].permute(0, 3, 1, 2)
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
        gh_blocks = []
        step = _block_rows(ctx.block, batch * md * Uf.shape[-1], order)
        buf = None
        for o0 in range(0, order, step):
            o1 = min(order, o0 + step)
            if buf is None or buf.shape[2] != o1 - o0:
                buf = torch.zeros(batch, md, o1 - o0, nfft, dtype=grad.dtype, device=grad.device)
            buf[..., :T] = grad[:, :, :, o0:o1].permute(0, 2, 3, 1)
            Gf = torch.fft.rfft(buf)  # (b, md, oc, Fr)
            if need_u:
                gu_f = gu_f + (Gf * Hf[None, :, o0:o1].conj()).sum(2)
            if need_h:
                corr = (Gf * Uf.conj()[:, :, None]).sum(0)  # (md, oc, Fr)
                if n == 1:
                    corr = corr.sum(0, keepdim=True)
                gh_blocks.append(torch.fft.irfft(corr, n=nfft)[..., :K])
        grad_u = torch.fft.irfft(gu_f, n=nfft)[..., :T].transpose(1, 2) if need_u else None
        grad_h = torch.cat(gh_blocks, dim=1).transpose(1, 2) if need_h else None
        return grad_u, grad_h, None


def _block_rows(block: int, per_row: int, order: int) -> int:
    """Rows of the order axis per block: about ``block`` complex elements, evenly split."""
    rows = max(1, min(order, block // max(1, per_row)))
    count = -(-order // rows)
    return -(-order // count)


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
