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

__all__ = ["FFT_BLOCK_ELEMENTS", "conv_fft", "conv_last", "conv_raw", "fft_length"]

#: Complex elements of one block of the FFT product; bounds the transient memory.
FFT_BLOCK_ELEMENTS = 1 << 23


def fft_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (fast FFT sizes)."""
    best = 1 << max(0, int(n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


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
    """Blocked FFT convolution with a hand-written backward that saves only u and H."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, H: torch.Tensor, block: int) -> torch.Tensor:  # type: ignore[override]
        batch, T, md = u.shape
        n, K, order = H.shape
        nfft = fft_length(T + K - 1)
        Uf = torch.fft.rfft(u, n=nfft, dim=1)[..., None]  # (b, Fr, md, 1)
        Hf = torch.fft.rfft(H, n=nfft, dim=1).transpose(0, 1)  # (Fr, n, order)
        out = torch.empty(batch, T, md, order, dtype=u.dtype, device=u.device)
        step = max(1, block // max(1, batch * Uf.shape[1] * md))
        for o0 in range(0, order, step):
            o1 = min(order, o0 + step)
            y = torch.fft.irfft(Uf * Hf[None, :, :, o0:o1], n=nfft, dim=1)
            out[:, :, :, o0:o1] = y[:, :T]
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
        Uf = torch.fft.rfft(u, n=nfft, dim=1)  # (b, Fr, md)
        Hf = torch.fft.rfft(H, n=nfft, dim=1).transpose(0, 1)  # (Fr, n, order)
        Fr = Uf.shape[1]
        gu_f = torch.zeros_like(Uf) if need_u else None
        gh_chunks = []
        step = max(1, ctx.block // max(1, batch * Fr * md))
        for o0 in range(0, order, step):
            o1 = min(order, o0 + step)
            Gf = torch.fft.rfft(grad[:, :, :, o0:o1], n=nfft, dim=1)  # (b, Fr, md, oc)
            if need_u:
                gu_f = gu_f + (Gf * Hf[None, :, :, o0:o1].conj()).sum(-1)
            if need_h:
                corr = (Gf * Uf.conj()[..., None]).sum(0)  # (Fr, md, oc)
                if n == 1:
                    corr = corr.sum(1, keepdim=True)
                gh_chunks.append(torch.fft.irfft(corr, n=nfft, dim=0)[:K])
        grad_u = torch.fft.irfft(gu_f, n=nfft, dim=1)[:, :T] if need_u else None
        grad_h = torch.cat(gh_chunks, dim=-1).transpose(0, 1) if need_h else None
        return grad_u, grad_h, None


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
