"""The LMU's discrete system as torch tensors: fixed (cached) and trainable (differentiable).

Fixed matrices and impulse responses come from :mod:`lmu.system` (NumPy, float64) and are
cached per layer by (kind, length, dtype, device).  When theta, A or B are trainable, the
same quantities are recomputed here with torch ops, in float64, once per forward call:
zero-order hold through ``torch.linalg.matrix_exp`` of the augmented system, impulse
responses and matrix powers by doubling (``log2(length)`` matrix products).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

import lmu.system

__all__ = [
    "TensorCache",
    "zoh_impulse_response",
    "discretize",
    "fixed_impulse_response",
    "fixed_matrices",
    "free_response",
    "impulse_response",
    "matrix_power",
]


@torch.compiler.disable
@functools.lru_cache(maxsize=32)
def fixed_matrices(
    order: int, thetas: tuple[float, ...], discretizer: str
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy float64 ``Ad`` (n, order, order) and ``Bd`` (n, order), one per distinct theta.

    ``n`` is 1 when every theta is equal (the matrices are then shared by all dimensions).
    """
    Ad, Bd = lmu.system.lmu_matrices(order, list(thetas), discretizer)
    return Ad, Bd[..., 0]


@functools.lru_cache(maxsize=32)
def _fixed_impulse(
    order: int, thetas: tuple[float, ...], discretizer: str, length: int
) -> np.ndarray:
    return lmu.system.impulse_response(order, list(thetas), length, discretizer)


@torch.compiler.disable
def fixed_impulse_response(
    order: int, thetas: tuple[float, ...], discretizer: str, length: int
) -> np.ndarray:
    """NumPy float64 impulse response, shape (n, length, order).

    Computed for the next power of two at or above ``length`` and sliced, so that changing
    sequence lengths share one computation (the doubling makes every prefix identical).
    """
    padded = 1 << max(0, int(length - 1).bit_length())
    return _fixed_impulse(order, thetas, discretizer, padded)[:, :length]


class TensorCache:
    """A small LRU of tensors derived from fixed matrices, keyed by hashable tuples."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._data: OrderedDict[Hashable, torch.Tensor] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The cached tensor for ``key``, made by ``make()`` on a miss."""
        if torch.compiler.is_compiling() or torch.compiler.is_exporting():
            return make()
        value = self._data.get(key)
        if value is None:
            value = make()
            self._data[key] = value
            if len(self._data) > self.size:
                self._data.popitem(last=False)
        else:
            self._data.move_to_end(key)
        return value

    def clear(self) -> None:
        """Forget everything (after a device move or a change of theta)."""
        self._data.clear()


def discretize(
    A: torch.Tensor, B: torch.Tensor, theta_inv: torch.Tensor, method: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable discretisation of ``A * theta_inv``, ``B * theta_inv`` with dt = 1.

    Parameters
    ----------
    A : Tensor, shape (order, order)
    B : Tensor, shape (order,) or (order, 1)
    theta_inv : Tensor, shape () or (n,)
    method : {"zoh", "euler", "bilinear"}

    Returns
    -------
    Ad : Tensor, shape (n, order, order)  (n = 1 for a scalar theta_inv)
    Bd : Tensor, shape (n, order)
    """
    order = A.shape[0]
    B = B.reshape(order)
    ti = theta_inv.reshape(-1, 1, 1)
    a = A[None] * ti
    b = B[None, :, None] * ti
    n = a.shape[0]
    if method == "zoh":
        top = torch.cat([a, b], dim=2)
        bottom = torch.zeros(n, 1, order + 1, dtype=a.dtype, device=a.device)
        ex = torch.linalg.matrix_exp(torch.cat([top, bottom], dim=1))
        return ex[:, :order, :order], ex[:, :order, order]
    eye = torch.eye(order, dtype=a.dtype, device=a.device)
    if method == "euler":
        return eye + a, b[..., 0]
    lhs = eye - 0.5 * a
    sol = torch.linalg.solve(lhs, torch.cat([eye + 0.5 * a, b], dim=2))
    return sol[:, :, :order], sol[:, :, order]


def impulse_response(Ad: torch.Tensor, Bd: torch.Tensor, length: int) -> torch.Tensor:
    """Rows ``Ad^k Bd`` for k < length; shape (n, length, order).

    Doubling (``H[k:2k] = H[:k] (Ad^k)^T``) up to a block of L rows, then block by block
    (``H[jL:(j+1)L] = H[(j-1)L:jL] (Ad^L)^T``): every squaring of Ad costs order^3, so
    stopping them at L (at most 64 blocks) saves log2(length / L) of them.
    """
    block = max(16, 1 << max(0, int(-(-length // 64) - 1).bit_length()))
    H = Bd[:, None, :]
    power = Ad
    k = 1
    while k < min(length, block):
        count = min(k, length - k)
        H = torch.cat([H, H[:, :count] @ power.transpose(1, 2)], dim=1)
        k += count
        if k < length:
            power = power @ power
    if k >= length:
        return H
    blocks = [H]
    last = H
    stepT = power.transpose(1, 2)  # (Ad^k)^T with k = block
    while k < length:
        count = min(k - (k - last.shape[1]), length - k)
        last = last[:, :count] @ stepT
        blocks.append(last)
        k += count
    return torch.cat(blocks, dim=1)


def matrix_power(Ad: torch.Tensor, steps: int) -> torch.Tensor:
    """``Ad ** steps`` (batched), by repeated squaring."""
    return torch.linalg.matrix_power(Ad, steps)


def free_response(Ad: torch.Tensor, m0: torch.Tensor, length: int) -> torch.Tensor:
    """The memory's response to its initial state alone: ``Ad^(t+1) m0`` for t < length.

    Parameters
    ----------
    Ad : Tensor, shape (n, order, order), n = 1 or memory_d
    m0 : Tensor, shape (batch, memory_d, order)
    length : int

    Returns
    -------
    Tensor, shape (batch, length, memory_d, order)

    Notes
    -----
    Doubling again: ``F[k:2k] = F[:k] (Ad^k)^T``, so ``log2(length)`` batched products whose
    total work is that of ``length`` steps of the recurrence, without a Python loop per step.
    """
    md = m0.shape[1]
    power = Ad.expand(md, -1, -1)
    F = torch.einsum("bdj,dij->bdi", m0, power)[:, None]
    k = 1
    while k < length:
        count = min(k, length - k)
        F = torch.cat([F, torch.einsum("btdj,dij->btdi", F[:, :count], power)], dim=1)
        k += count
        if k < length:
            power = power @ power
    return F


class _ZohImpulse(torch.autograd.Function):
    """Zero-order-hold impulse response as a function of theta_inv alone (A, B fixed).

    With ``Ad = exp(s A)`` and ``Bd = A^-1 (Ad - I) B`` (s = theta_inv), ``H[k] = A^-1 (e_{k+1} -
    e_k)`` where ``e_k = Ad^k B``, so ``dH[k]/ds = (k + 1) e_{k+1} - k e_k
    = B + A (S_k + k H[k])`` with ``S_k = H[0] + ... + H[k]``.  The backward pass is then one
    matmul with A and a cumulative sum instead of differentiating through the matrix
    exponential and the doubling.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, theta_inv: torch.Tensor, A: torch.Tensor, B: torch.Tensor, length: int
    ) -> torch.Tensor:
        with torch.no_grad():
            Ad, Bd = discretize(A, B, theta_inv, "zoh")
            H = impulse_response(Ad, Bd, length)
        ctx.save_for_backward(H, A, B)
        ctx.scalar = theta_inv.dim() == 0
        return H

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        H, A, B = ctx.saved_tensors
        k = torch.arange(H.shape[1], dtype=H.dtype, device=H.device)[None, :, None]
        term = torch.cumsum(H, dim=1) + k * H  # (n, T, order)
        # <G[k], B + A term_k> = <G[k], B> + <A^T G[k], term_k>
        g = (grad * B.reshape(1, 1, -1)).sum(dim=(1, 2)) + ((grad @ A) * term).sum(dim=(1, 2))
        return (g[0] if ctx.scalar else g), None, None, None


def zoh_impulse_response(
    theta_inv: torch.Tensor, A: torch.Tensor, B: torch.Tensor, length: int
) -> torch.Tensor:
    """Impulse response (n, length, order) of the zoh system, differentiable in theta_inv.

    Parameters
    ----------
    theta_inv : Tensor, shape () or (n,)
    A, B : Tensor
        The continuous system, (order, order) and (order,) or (order, 1), not trained.
    length : int
    """
    return _ZohImpulse.apply(theta_inv, A, B.reshape(-1), length)
