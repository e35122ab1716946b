"""The discrete Legendre system as Keras tensors: fixed (from lmu.system) or differentiable.

A fixed system (no trainable theta, A or B) comes from :mod:`lmu.system` in NumPy, cached per
sequence length.  A trainable one is discretised here with ``keras.ops`` once per layer call:
zero-order hold by a scaling-and-squaring Taylor matrix exponential, Euler, or bilinear, and
the impulse response by doubling (``log2(T)`` batched matrix products).

Matrices are stacked per *group*: one group shared by every memory dimension when theta is a
scalar, or one group per memory dimension when theta is given per dimension.  Shapes:
``Ad (G, order, order)``, ``Bd (G, order)``, impulse response ``H (G, T, order)``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import keras
import numpy as np
from keras import ops

from lmu.system import impulse_response, legendre_system, lmu_matrices, truncation_length

__all__ = [
    "DiscreteSystem",
    "doubling",
    "expm",
    "fixed_impulse",
    "fixed_impulse_fft",
    "fixed_matrices",
    "fixed_power",
]

_TAYLOR_DEGREE = 14  # with ||X|| <= 0.5: truncation error below 1e-18 relative


@functools.lru_cache(maxsize=32)
def fixed_matrices(order: int, thetas: tuple[float, ...], discretizer: str) -> tuple[Any, Any]:
    """NumPy ``Ad (G, order, order)``, ``Bd (G, order)`` for fixed thetas (G = 1 if all equal)."""
    uniq = thetas[:1] if len(set(thetas)) == 1 else thetas
    Ad, Bd = lmu_matrices(order, np.asarray(uniq), discretizer)
    return Ad, Bd[..., 0]


@functools.lru_cache(maxsize=32)
def fixed_impulse(
    order: int, thetas: tuple[float, ...], discretizer: str, length: int, tol: float | None = None
) -> np.ndarray:
    """NumPy impulse response ``(G, length', order)``; truncated at ``tol`` when given."""
    uniq = thetas[:1] if len(set(thetas)) == 1 else thetas
    H = impulse_response(order, np.asarray(uniq), length, discretizer)
    if tol is not None:
        H = H[:, : truncation_length(H, tol)]
    return H


@functools.lru_cache(maxsize=32)
def fixed_impulse_fft(
    order: int, thetas: tuple[float, ...], discretizer: str, length: int, fft_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy rfft (real, imaginary) of the impulse response along time, ``(G, order, F)``."""
    H = fixed_impulse(order, thetas, discretizer, length)
    Hf = np.fft.rfft(np.transpose(H, (0, 2, 1)), n=fft_length, axis=-1)
    return Hf.real.copy(), Hf.imag.copy()


@functools.lru_cache(maxsize=32)
def fixed_power(order: int, thetas: tuple[float, ...], discretizer: str, k: int) -> np.ndarray:
    """NumPy ``Ad**k`` per group, ``(G, order, order)`` (exact expm for zoh)."""
    uniq = thetas[:1] if len(set(thetas)) == 1 else thetas
    A, _ = legendre_system(order)
    out = []
    for th in uniq:
        if discretizer == "zoh":
            import scipy.linalg

            out.append(scipy.linalg.expm(A * (k / th)))
        else:
            Ad, _ = lmu_matrices(order, th, discretizer)
            out.append(np.linalg.matrix_power(Ad, k))
    return np.stack(out)


def expm(x: Any, max_squarings: int) -> Any:
    """Differentiable matrix exponential of a batch ``(G, n, n)`` in ``keras.ops``.

    Scaling and squaring: ``x / 2**s`` with ``s`` chosen per matrix so that its 1-norm is at
    most 0.5, a Taylor polynomial, then ``s`` squarings (a fixed loop of ``max_squarings``
    steps, each applied only while needed, so that ``s`` may change during training).
    """
    norm = ops.max(ops.sum(ops.abs(x), axis=-2), axis=-1)  # (G,)
    s = ops.ceil(ops.log(ops.maximum(norm, 1e-30) / 0.5) / math.log(2.0))
    s = ops.clip(s, 0.0, float(max_squarings))
    xs = x / ops.reshape(2.0**s, (-1, 1, 1))
    eye = ops.eye(ops.shape(x)[-1], dtype=x.dtype)
    term = ops.broadcast_to(eye, ops.shape(x))
    out = term
    for k in range(1, _TAYLOR_DEGREE + 1):
        term = ops.matmul(term, xs) / float(k)
        out = out + term
    for i in range(max_squarings):
        sq = ops.matmul(out, out)
        out = ops.where(ops.reshape(float(i) < s, (-1, 1, 1)), sq, out)
    return out


def doubling(first: Any, powers: list[Any], length: int, apply: Any) -> Any:
    """Fill ``Y[t] = P**t (first)`` along axis 1 for ``t < length`` by doubling.

    Parameters
    ----------
    first : tensor
        ``Y[0]`` with a time axis of length 1 at axis 1.
    powers : list of tensor
        ``powers[j] = P**(2**j)``, as many as needed (see :func:`power_chain`).
    length : int
    apply : callable
        ``apply(block, power)`` applies a power of P to a block of Y.
    """
    out = first
    k, j = 1, 0
    while k < length:
        n = min(k, length - k)
        out = ops.concatenate([out, apply(out[:, :n], powers[j])], axis=1)
        k += n
        j += 1
    return out


def power_chain(P: Any, length: int) -> list[Any]:
    """``[P, P**2, P**4, ...]``: the powers :func:`doubling` needs for ``length`` steps."""
    powers = [P]
    k = 1
    while 2 * k < length:
        powers.append(ops.matmul(powers[-1], powers[-1]))
        k *= 2
    return powers


def matrix_power(powers: list[Any], k: int, eye: Any) -> Any:
    """``P**k`` from the chain ``[P, P**2, P**4, ...]`` (binary exponentiation)."""
    out = None
    j = 0
    while k:
        if k & 1:
            while j >= len(powers):
                powers.append(ops.matmul(powers[-1], powers[-1]))
            out = powers[j] if out is None else ops.matmul(out, powers[j])
        k >>= 1
        j += 1
    return eye if out is None else out


class DiscreteSystem:
    """The discrete matrices of one layer call, as tensors of the compute dtype.

    Parameters
    ----------
    order : int
    thetas : tuple of float
        Initial theta per memory dimension.
    discretizer : str
    dtype : str
        Compute dtype.
    theta_inv, A, B : keras.Variable or None
        Trainable variables; None means fixed.
    """

    def __init__(
        self,
        order: int,
        thetas: tuple[float, ...],
        discretizer: str,
        dtype: str,
        theta_inv: Any = None,
        A: Any = None,
        B: Any = None,
    ) -> None:
        self.order = order
        self.thetas = thetas
        self.discretizer = discretizer
        self.dtype = dtype
        self.trainable = theta_inv is not None or A is not None or B is not None
        self.groups = (
            1
            if len(set(thetas)) == 1 and (theta_inv is None or theta_inv.shape == ())
            else len(thetas)
        )
        self._powers: list[Any] | None = None
        if not self.trainable:
            Ad, Bd = fixed_matrices(order, thetas, discretizer)
            self.Ad = ops.convert_to_tensor(Ad, dtype=dtype)
            self.Bd = ops.convert_to_tensor(Bd, dtype=dtype)
            return
        A0, B0 = legendre_system(order)
        A_ = ops.cast(A, dtype) if A is not None else ops.convert_to_tensor(A0, dtype=dtype)
        B_ = ops.cast(B, dtype) if B is not None else ops.convert_to_tensor(B0, dtype=dtype)
        if theta_inv is not None:
            inv = ops.reshape(ops.cast(theta_inv, dtype), (-1,))
            inv = ops.broadcast_to(inv, (self.groups,))
        else:
            inv = ops.convert_to_tensor(
                1.0 / np.asarray(thetas[: self.groups], dtype=np.float64), dtype=dtype
            )
        inv3 = ops.reshape(inv, (-1, 1, 1))
        Ac = A_[None] * inv3  # (G, n, n)
        Bc = ops.reshape(B_, (1, order, 1)) * inv3  # (G, n, 1)
        if discretizer == "zoh":
            G = self.groups
            top = ops.concatenate([Ac, Bc], axis=2)
            aug = ops.concatenate([top, ops.zeros((G, 1, order + 1), dtype=dtype)], axis=1)
            ex = expm(aug, max_squarings=self._max_squarings(A0))
            self.Ad, self.Bd = ex[:, :order, :order], ex[:, :order, order]
        elif discretizer == "euler":
            self.Ad = ops.eye(order, dtype=dtype)[None] + Ac
            self.Bd = Bc[..., 0]
        else:
            eye = ops.eye(order, dtype=dtype)[None]
            lhs = eye - 0.5 * Ac
            self.Ad = ops.linalg.solve(lhs, eye + 0.5 * Ac)
            self.Bd = ops.linalg.solve(lhs, Bc)[..., 0]

    def _max_squarings(self, A0: np.ndarray) -> int:
        norm = (np.abs(A0).sum(axis=0).max() + np.abs(A0).sum(axis=1).max()) / min(self.thetas)
        return max(4, int(math.ceil(math.log2(max(norm, 1.0) / 0.5))) + 8)

    # -- impulse responses and powers -------------------------------------------------------
    def powers(self, length: int) -> list[Any]:
        """``[Ad, Ad**2, Ad**4, ...]`` enough for ``length`` steps."""
        if self._powers is None:
            self._powers = [self.Ad]
        k = 2 ** (len(self._powers) - 1)
        while 2 * k < length:
            self._powers.append(ops.matmul(self._powers[-1], self._powers[-1]))
            k *= 2
        return self._powers

    def impulse(self, length: int, tol: float | None = None) -> Any:
        """Impulse response ``(G, length', order)``, ``H[k] = Ad**k Bd``."""
        if not self.trainable:
            H = fixed_impulse(self.order, self.thetas, self.discretizer, length, tol)
            return ops.convert_to_tensor(H, dtype=self.dtype)
        H = doubling(
            self.Bd[:, None, :],
            self.powers(length),
            length,
            lambda blk, P: ops.einsum("gtj,gij->gti", blk, P),
        )
        if tol is not None:
            # the truncation point is chosen from the initial system (a static length)
            K = fixed_impulse(self.order, self.thetas, self.discretizer, length, tol).shape[1]
            H = H[:, :K]
        return H

    def impulse_fft(self, length: int, fft_length: int) -> tuple[Any, Any]:
        """Real and imaginary parts of the impulse response's rfft, ``(G, order, F)`` each."""
        if not self.trainable:
            hr, hi = fixed_impulse_fft(
                self.order, self.thetas, self.discretizer, length, fft_length
            )
            return (
                ops.convert_to_tensor(hr, dtype=self.dtype),
                ops.convert_to_tensor(hi, dtype=self.dtype),
            )
        H = self.impulse(length)
        return ops.rfft(ops.transpose(H, (0, 2, 1)), fft_length=fft_length)

    def power(self, k: int) -> Any:
        """``Ad**k`` per group ``(G, order, order)``."""
        if not self.trainable:
            return ops.convert_to_tensor(
                fixed_power(self.order, self.thetas, self.discretizer, k), dtype=self.dtype
            )
        eye = ops.broadcast_to(ops.eye(self.order, dtype=self.dtype), ops.shape(self.Ad))
        return matrix_power(self.powers(k), k, eye)

    def free_response(self, m0: Any, length: int) -> Any:
        """``Ad**(t+1) m0`` for ``t < length``: ``(batch, length, memory_d, order)``.

        ``m0`` has shape ``(batch, memory_d, order)``.
        """

        def apply(blk: Any, P: Any) -> Any:
            if self.groups == 1:
                return ops.einsum("btdj,ij->btdi", blk, P[0])
            return ops.einsum("btdj,dij->btdi", blk, P)

        first = apply(m0[:, None], self.Ad)
        return doubling(first, self.powers(length), length, apply)


def is_keras_variable(value: Any) -> bool:
    """Whether ``value`` is a Keras variable."""
    return isinstance(value, keras.Variable)
