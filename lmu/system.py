"""The Legendre state-space system: matrices, discretisation, impulse responses, decoders.

Everything here is backend-neutral NumPy/SciPy.  The continuous system is

.. math:: \\theta \\dot m(t) = A m(t) + B u(t)

and the layers use ``A / theta`` and ``B / theta`` discretised with a time step of one.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.linalg
import scipy.special

__all__ = [
    "DISCRETIZERS",
    "discretize",
    "euler_theta_bound",
    "fft_length",
    "impulse_response",
    "legendre_decoder",
    "legendre_system",
    "lmu_matrices",
    "truncation_length",
]

#: The discretisation methods every backend supports.
DISCRETIZERS: tuple[str, ...] = ("zoh", "euler", "bilinear")


def _check_order(order: Any) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"order must be a positive int (got {order!r})")
    return int(order)


def _check_method(method: Any, name: str = "method") -> str:
    if method not in DISCRETIZERS:
        raise ValueError(f"{name} must be one of {DISCRETIZERS} (got {method!r})")
    return str(method)


def _check_theta(theta: Any) -> np.ndarray:
    """Return theta as a float64 array (0-d or 1-d), all entries finite and > 0."""
    if isinstance(theta, (str, bytes, bool, np.bool_)) or (
        isinstance(theta, np.ndarray) and theta.dtype.kind not in "iuf"
    ):
        raise ValueError(
            f"theta must be a positive number or a 1-d sequence of them (got {theta!r})"
        )
    if isinstance(theta, (list, tuple)) and any(
        isinstance(t, (str, bytes, bool, np.bool_)) for t in theta
    ):
        raise ValueError(
            f"theta must be a positive number or a 1-d sequence of them (got {theta!r})"
        )
    try:
        arr = np.asarray(theta, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"theta must be a positive number or a 1-d sequence of them (got {theta!r})"
        ) from None
    if arr.ndim > 1 or arr.size == 0:
        raise ValueError(
            f"theta must be a positive number or a 1-d sequence of them (got shape {arr.shape})"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        shown = theta if arr.ndim == 0 else arr.tolist()
        raise ValueError(f"theta must be > 0 and finite (got {shown!r})")
    return arr


def _check_real(name: str, value: Any) -> float:
    """A finite real scalar (not a bool), else ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise ValueError(f"{name} must be a finite number (got {value!r})")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number (got {value!r})") from None
    return out


def legendre_system(order: int, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """The continuous-time Legendre memory matrices.

    Parameters
    ----------
    order : int
        Number of Legendre coefficients kept (the memory's dimension per input).
    dtype : numpy dtype, optional
        Output dtype (float64 by default).

    Returns
    -------
    A : ndarray, shape (order, order)
        ``A[i, j] = (2i + 1) * (-1 if i < j else (-1) ** (i - j + 1))``.
    B : ndarray, shape (order, 1)
        ``B[i] = (2i + 1) * (-1) ** i``.

    Raises
    ------
    ValueError
        If ``order`` is not a positive int.
    """
    order = _check_order(order)
    i = np.arange(order)[:, None]
    j = np.arange(order)[None, :]
    scale = 2.0 * i + 1.0
    A = scale * np.where(i < j, -1.0, (-1.0) ** (i - j + 1))
    B = scale * ((-1.0) ** i)
    return A.astype(dtype), B.reshape(order, 1).astype(dtype)


def discretize(
    A: np.ndarray, B: np.ndarray, dt: float = 1.0, method: str = "zoh"
) -> tuple[np.ndarray, np.ndarray]:
    """Discretise ``x' = A x + B u`` with time step ``dt``.

    Parameters
    ----------
    A : ndarray, shape (n, n)
    B : ndarray, shape (n, k)
    dt : float
        Time step, > 0.
    method : {"zoh", "euler", "bilinear"}
        Zero-order hold (matrix exponential), forward Euler (``I + dt A``), or the bilinear
        (Tustin) transform.  "zoh" and "bilinear" agree with ``scipy.signal.cont2discrete``.

    Returns
    -------
    Ad : ndarray, shape (n, n)
    Bd : ndarray, shape (n, k)

    Raises
    ------
    ValueError
        For an unknown method, a non-positive or non-finite ``dt``, or mismatched shapes.
    """
    method = _check_method(method)
    dt = _check_real("dt", dt)
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be > 0 and finite (got {dt!r})")
    A = np.asarray(A)
    B = np.asarray(B)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix (got shape {A.shape})")
    if B.ndim != 2 or B.shape[0] != A.shape[0]:
        raise ValueError(f"B must have shape ({A.shape[0]}, k) (got shape {B.shape})")
    n, k = B.shape
    dtype = np.result_type(A, B, np.float32)
    if method == "zoh":
        em = np.zeros((n + k, n + k), dtype=np.float64)
        em[:n, :n] = A * dt
        em[:n, n:] = B * dt
        ex = scipy.linalg.expm(em)
        Ad, Bd = ex[:n, :n], ex[:n, n:]
    elif method == "euler":
        Ad = np.eye(n) + dt * A
        Bd = dt * B
    else:  # bilinear
        eye = np.eye(n)
        lhs = eye - 0.5 * dt * A
        Ad = np.linalg.solve(lhs, eye + 0.5 * dt * A)
        Bd = np.linalg.solve(lhs, dt * B)
    return Ad.astype(dtype), Bd.astype(dtype)


@functools.lru_cache(maxsize=64)
def euler_theta_bound(order: int) -> float:
    """Smallest theta for which Euler discretisation of the Legendre system is stable.

    Forward Euler maps each eigenvalue ``l`` of ``A / theta`` to ``1 + l``; the step is stable
    when all of them lie inside the unit circle, i.e. when
    ``theta > max |l|**2 / (2 |Re l|)`` over the eigenvalues ``l`` of ``A``.

    Parameters
    ----------
    order : int

    Returns
    -------
    float
        The bound (theta must exceed it).
    """
    A, _ = legendre_system(order)
    eig = np.linalg.eigvals(A)
    return float(np.max(np.abs(eig) ** 2 / (2.0 * np.abs(eig.real))))


def _warn_euler(order: int, theta: np.ndarray) -> None:
    bound = euler_theta_bound(order)
    smallest = float(np.min(theta))
    if smallest <= bound:
        warnings.warn(
            f"discretizer='euler' is unstable for order={order} with theta={smallest:g}: "
            f"it needs theta > {bound:.4g} (use 'zoh' or 'bilinear', or a larger theta)",
            RuntimeWarning,
            stacklevel=3,
        )


def lmu_matrices(
    order: int,
    theta: float | Sequence[float] | np.ndarray,
    discretizer: str = "zoh",
    dtype: Any = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """The discrete LMU matrices: ``A / theta`` and ``B / theta`` discretised with ``dt = 1``.

    Parameters
    ----------
    order : int
        Legendre order.
    theta : float or sequence of float
        Window length in steps.  A 1-d sequence gives one window per memory dimension and
        stacked matrices.
    discretizer : {"zoh", "euler", "bilinear"}
    dtype : numpy dtype, optional

    Returns
    -------
    Ad : ndarray, shape (order, order) or (len(theta), order, order)
    Bd : ndarray, shape (order, 1) or (len(theta), order, 1)

    Raises
    ------
    ValueError
        For a bad order, theta or discretizer.

    Warns
    -----
    RuntimeWarning
        With ``discretizer="euler"`` when theta is too small for a stable step; the message
        gives the bound.
    """
    order = _check_order(order)
    discretizer = _check_method(discretizer, "discretizer")
    th = _check_theta(theta)
    if discretizer == "euler":
        _warn_euler(order, th)
    A, B = legendre_system(order)
    if th.ndim == 0:
        Ad, Bd = discretize(A / float(th), B / float(th), 1.0, discretizer)
        return Ad.astype(dtype), Bd.astype(dtype)
    pairs = [discretize(A / t, B / t, 1.0, discretizer) for t in th]
    return (
        np.stack([p[0] for p in pairs]).astype(dtype),
        np.stack([p[1] for p in pairs]).astype(dtype),
    )


def _impulse_single(order: int, theta: float, length: int, discretizer: str) -> np.ndarray:
    """Rows ``Ad^t Bd`` for t < length, by doubling: H[k:2k] = H[:k] @ (Ad^k)^T.

    ``Ad^k`` comes from repeated squaring: ``log2(length)`` matrix products.  (Taking it as
    ``expm(A k / theta)`` for "zoh" is no more accurate and several times slower for large
    orders, since expm then squares internally anyway.)
    """
    A, B = legendre_system(order)
    Ad, Bd = discretize(A / theta, B / theta, 1.0, discretizer)
    H = np.empty((length, order), dtype=np.float64)
    H[0] = Bd[:, 0]
    k = 1
    power = Ad  # Ad^k
    while k < length:
        n = min(k, length - k)
        H[k : k + n] = H[:n] @ power.T
        k += n
        if k < length:  # here n was k/2, so squaring makes power Ad^k
            power = power @ power
    return H


def impulse_response(
    order: int,
    theta: float | Sequence[float] | np.ndarray,
    length: int,
    discretizer: str = "zoh",
    tol: float | None = None,
    dtype: Any = np.float64,
) -> np.ndarray:
    """Impulse response of the discrete LMU memory: row ``t`` is ``Ad**t @ Bd``.

    Computed by doubling (``log2(length)`` matrix products, no Python loop per step), which
    matches the step-by-step product to rounding error.

    Parameters
    ----------
    order : int
    theta : float or sequence of float
        One window, or one per memory dimension.
    length : int
        Number of steps, >= 1.
    discretizer : {"zoh", "euler", "bilinear"}
    tol : float, optional
        If given (in (0, 1)), return the shortest prefix ``H[:L]`` whose dropped tail has a
        relative norm ``||H[L:]|| / ||H||`` of at most ``tol`` (for truncated convolution).
        With several thetas, one L serves all of them (the largest needed).
    dtype : numpy dtype, optional

    Returns
    -------
    ndarray, shape (length, order), or (len(theta), length, order) for several thetas.

    Raises
    ------
    ValueError
        For a bad order, theta, length, discretizer or tol.
    """
    order = _check_order(order)
    discretizer = _check_method(discretizer, "discretizer")
    th = _check_theta(theta)
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"length must be a positive int (got {length!r})")
    if tol is not None:
        _check_tol(tol)
    if discretizer == "euler":
        _warn_euler(order, th)
    thetas = np.atleast_1d(th)
    H = np.stack([_impulse_single(order, float(t), int(length), discretizer) for t in thetas])
    if tol is not None:
        H = H[:, : truncation_length(H, tol)]
    H = H.astype(dtype)
    return H[0] if th.ndim == 0 else H


def _check_tol(tol: Any) -> float:
    value = _check_real("tol", tol)
    if not (0 < value < 1):
        raise ValueError(f"tol must be in (0, 1) or None (got {tol!r})")
    return value


def truncation_length(H: np.ndarray, tol: float) -> int:
    """Shortest L such that ``||H[..., L:, :]|| <= tol * ||H||`` for every leading index.

    Parameters
    ----------
    H : ndarray, shape (..., length, order)
        Impulse responses (one per leading index).
    tol : float in (0, 1)
        Allowed relative norm of the dropped tail.

    Returns
    -------
    int
        The prefix length L, between 1 and ``length``.

    Raises
    ------
    ValueError
        For a tol outside (0, 1) or an H with fewer than 2 dimensions.
    """
    tol = _check_tol(tol)
    H = np.asarray(H)
    if H.ndim < 2 or H.shape[-2] == 0:
        raise ValueError(f"H must have shape (..., length >= 1, order) (got shape {H.shape})")
    H3 = H.reshape((-1,) + H.shape[-2:])
    energy = np.sum(H3.astype(np.float64) ** 2, axis=-1)  # (n, length)
    # tail[:, L] = energy of rows L..end
    tail = np.cumsum(energy[:, ::-1], axis=1)[:, ::-1]
    total = tail[:, :1]
    ok = np.sqrt(tail) <= tol * np.sqrt(total)
    ok = np.concatenate([ok, np.ones((ok.shape[0], 1), dtype=bool)], axis=1)
    # first index where the tail is small enough; that prefix length is L
    lengths = np.argmax(ok, axis=1)
    return max(1, int(np.max(lengths)))


def legendre_decoder(
    order: int, r: float | Sequence[float] | np.ndarray, dtype: Any = np.float64
) -> np.ndarray:
    """Decoder that reads the delayed input back from the memory.

    ``u(t - r * theta) ~= legendre_decoder(order, r) @ m_t`` for ``r`` in [0, 1].

    Parameters
    ----------
    order : int
    r : float or sequence of float
        Relative delays in [0, 1].
    dtype : numpy dtype, optional

    Returns
    -------
    ndarray, shape (len(r), order)
        ``P_i(2 r - 1)``: the shifted Legendre polynomials.

    Raises
    ------
    ValueError
        For a bad order or an r outside [0, 1].
    """
    order = _check_order(order)
    if isinstance(r, (str, bytes)):
        raise ValueError(f"r must be a number or a 1-d sequence of numbers in [0, 1] (got {r!r})")
    try:
        r_arr = np.atleast_1d(np.asarray(r, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(
            f"r must be a number or a 1-d sequence of numbers in [0, 1] (got {r!r})"
        ) from None
    if r_arr.ndim != 1:
        raise ValueError(f"r must be a number or a 1-d sequence (got shape {r_arr.shape})")
    if not np.all((r_arr >= 0) & (r_arr <= 1)):
        raise ValueError(f"r must lie in [0, 1] (got {r_arr.tolist()!r})")
    i = np.arange(order)[None, :]
    return scipy.special.eval_legendre(i, 2.0 * r_arr[:, None] - 1.0).astype(dtype)


def fft_length(n: int, primes: Sequence[int] = (2, 3, 5, 7)) -> int:
    """The smallest length >= n whose prime factors all lie in ``primes`` (a fast FFT size).

    Parameters
    ----------
    n : int
        The least acceptable length, >= 1.
    primes : sequence of int
        Allowed prime factors; must include 2.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        For n < 1 or primes without 2.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int (got {n!r})")
    if 2 not in primes:
        raise ValueError(f"primes must include 2 (got {tuple(primes)!r})")
    best = 1 << (int(n) - 1).bit_length()  # a power of two always qualifies
    odd = [p for p in primes if p != 2]

    def search(value: int, index: int) -> None:
        nonlocal best
        # value is a product of odd primes; pad it with twos up to n
        padded = value
        while padded < n:
            padded *= 2
        best = min(best, padded)
        for k in range(index, len(odd)):
            if value * odd[k] < best:
                search(value * odd[k], k)

    search(1, 0)
    return best
