"""The LMU memory over a whole sequence: last-state, FFT, raw convolution, and one step.

All functions take the memory's input ``u`` of shape ``(batch, time, memory_d)`` (already
projected by ``kernel`` and ``bias``) and a :class:`~lmu_keras._system.DiscreteSystem`; the
sequence functions return ``(batch, time, memory_d, order)``, the last-state function
``(batch, memory_d, order)``.  An initial memory ``m0`` of shape ``(batch, memory_d, order)``
adds its free response ``Ad**(t+1) m0``.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from lmu.system import fft_length

from ._system import DiscreteSystem

__all__ = [
    "free_last",
    "memory_fft",
    "memory_last",
    "memory_raw",
    "memory_step",
    "projected_fft",
]

#: Complex elements (batch * memory_d * order block * frequencies) per FFT block.
FFT_BLOCK_ELEMENTS = 2**27


def _fft_size(T: int) -> int:
    """Transform length for the linear convolution of two length-T sequences (no wrap)."""
    return fft_length(2 * T - 1) if T > 1 else 2


def _with_free_response(m: Any, system: DiscreteSystem, m0: Any) -> Any:
    if m0 is None:
        return m
    return m + system.free_response(m0, m.shape[1])


def memory_last(u: Any, system: DiscreteSystem, m0: Any = None) -> Any:
    """The final memory only: one contraction of ``u`` with the reversed impulse response."""
    T = u.shape[1]
    H = ops.flip(system.impulse(T), axis=1)  # (G, T, n): row t is H[T-1-t]
    if system.groups == 1:
        m = ops.einsum("btd,ti->bdi", u, H[0])
    else:
        m = ops.einsum("btd,dti->bdi", u, H)
    if m0 is not None:
        m = m + free_last(m0, system, T)
    return m


def free_last(m0: Any, system: DiscreteSystem, T: int) -> Any:
    """``Ad**T m0``: what an initial memory ``(batch, memory_d, order)`` becomes after T steps."""
    P = system.power(T)
    if system.groups == 1:
        return ops.einsum("bdj,ij->bdi", m0, P[0])
    return ops.einsum("bdj,dij->bdi", m0, P)


def memory_fft(u: Any, system: DiscreteSystem, m0: Any = None) -> Any:
    """Every step's memory by FFT convolution, blocked over the order axis.

    With a fixed system (the impulse response a constant), the gradient with respect to u
    is the hand-written adjoint, :func:`_correlate_fft`, through ``keras.ops.custom_gradient``:
    one transform of the output gradient and a sum over the orders in the frequency domain.
    Left to automatic differentiation, TensorFlow spends about twice as long on the same
    gradient.  A trainable system keeps automatic differentiation (H needs its gradient too).
    """
    T = u.shape[1]
    N = _fft_size(T)
    hr, hi = system.impulse_fft(T, N)  # (G, n, F)
    if system.trainable:
        m = _convolve_fft(u, hr, hi, N)
    else:

        @ops.custom_gradient
        def convolve(u: Any) -> Any:
            def grad(*args: Any, upstream: Any = None) -> Any:
                if upstream is None:
                    (upstream,) = args
                return _correlate_fft(upstream, hr, hi, N)

            return _convolve_fft(u, hr, hi, N), grad

        m = convolve(u)
    return _with_free_response(m, system, m0)


def projected_fft(u: Any, G: Any) -> Any:
    """``z[b, t, :] = sum_d sum_s G[d, t - s, :] u[b, s, d]`` by FFT, ``(B, T, k)``.

    ``G`` (memory_d, T, k) is the impulse response already multiplied by the weights that
    read the memory, so the memory sequence itself is never formed.
    """
    T, md = u.shape[1], u.shape[2]
    N = _fft_size(T)
    ur, ui = ops.rfft(ops.transpose(u, (0, 2, 1)), fft_length=N)  # (B, md, F)
    gr, gi = ops.rfft(ops.transpose(G, (0, 2, 1)), fft_length=N)  # (md, k, F)
    if md == 1:
        ur, ui = ur[:, 0, None], ui[:, 0, None]
        re = ur * gr[0] - ui * gi[0]
        im = ur * gi[0] + ui * gr[0]
    else:
        re = ops.einsum("bdf,dkf->bkf", ur, gr) - ops.einsum("bdf,dkf->bkf", ui, gi)
        im = ops.einsum("bdf,dkf->bkf", ur, gi) + ops.einsum("bdf,dkf->bkf", ui, gr)
    z = ops.irfft((re, im), fft_length=N)[..., :T]  # (B, k, T)
    return ops.transpose(z, (0, 2, 1))


def _order_blocks(batch: Any, md: int, n: int, F: int) -> list[tuple[int, int]]:
    """Spans of the order axis with about ``FFT_BLOCK_ELEMENTS`` complex products each."""
    b_static = batch if isinstance(batch, int) else 64
    block = max(1, min(n, FFT_BLOCK_ELEMENTS // max(1, b_static * md * F)))
    block = -(-n // -(-n // block))  # equal blocks
    return [(start, min(n, start + block)) for start in range(0, n, block)]


def _convolve_fft(u: Any, hr: Any, hi: Any, N: int) -> Any:
    """``m[b, t, d, i] = sum_s H[d, t - s, i] u[b, s, d]``, ``(B, T, md, n)``, from H's spectra."""
    batch, T, md = ops.shape(u)[0], u.shape[1], u.shape[2]
    n = hr.shape[1]
    ur, ui = ops.rfft(ops.transpose(u, (0, 2, 1)), fft_length=N)  # (B, md, F)
    ur, ui = ur[:, :, None, :], ui[:, :, None, :]
    parts = []
    for start, stop in _order_blocks(batch, md, n, ur.shape[-1]):
        br, bi = hr[:, start:stop], hi[:, start:stop]
        re = ur * br - ui * bi
        im = ur * bi + ui * br
        parts.append(ops.irfft((re, im), fft_length=N)[..., :T])  # (B, md, nb, T)
    m = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=2)
    return ops.transpose(m, (0, 3, 1, 2))  # (B, T, md, n)


def _correlate_fft(g: Any, hr: Any, hi: Any, N: int) -> Any:
    """The adjoint of :func:`_convolve_fft` in u: ``sum_i sum_t g[b, t, d, i] H[d, t - s, i]``.

    The correlation is ``irfft(sum_i G_i conj(H_i))`` with ``G`` the spectra of the output
    gradient, blocked over the order axis like the forward; returns ``(B, T, md)``.
    """
    batch, T, md, n = ops.shape(g)[0], g.shape[1], g.shape[2], g.shape[3]
    ar = ai = None
    for start, stop in _order_blocks(batch, md, n, hr.shape[-1]):
        gb = ops.transpose(g[..., start:stop], (0, 2, 3, 1))  # (B, md, nb, T)
        gr, gi = ops.rfft(gb, fft_length=N)  # (B, md, nb, F)
        br, bi = hr[:, start:stop], hi[:, start:stop]
        re = ops.sum(gr * br + gi * bi, axis=2)
        im = ops.sum(gi * br - gr * bi, axis=2)
        ar, ai = (re, im) if ar is None else (ar + re, ai + im)
    return ops.transpose(ops.irfft((ar, ai), fft_length=N)[..., :T], (0, 2, 1))


def memory_raw(u: Any, system: DiscreteSystem, tol: float | None = None, m0: Any = None) -> Any:
    """Every step's memory by direct causal (depthwise) convolution.

    ``tol`` truncates the impulse response (see :func:`lmu.system.impulse_response`); None
    convolves with the full response and is exact.
    """
    T, md = u.shape[1], u.shape[2]
    n = system.order
    H = system.impulse(T, tol)  # (G, K, n)
    K = H.shape[1]
    H = ops.flip(H, axis=1)
    if system.groups == 1:
        kernel = ops.broadcast_to(H[0][:, None, :], (K, md, n))
    else:
        kernel = ops.transpose(H, (1, 0, 2))
    padded = ops.pad(u, [[0, 0], [K - 1, 0], [0, 0]]) if K > 1 else u
    m = ops.depthwise_conv(padded, kernel, strides=1, padding="valid")  # (B, T, md * n)
    m = ops.reshape(m, (-1, T, md, n))
    return _with_free_response(m, system, m0)


def memory_step(m: Any, u: Any, system: DiscreteSystem, Ad_T: Any) -> Any:
    """One memory update ``m Adᵀ + u Bdᵀ``.

    Parameters
    ----------
    m : tensor (batch, memory_d, order)
    u : tensor (batch, memory_d)
    system : DiscreteSystem
    Ad_T : tensor
        ``Ad`` transposed on its last two axes, precomputed once per call.
    """
    if system.groups == 1:
        # 2-D products: their gradients need no batch-sized intermediates
        md, n = m.shape[1], m.shape[2]
        m2 = ops.matmul(ops.reshape(m, (-1, n)), Ad_T[0])
        m2 = m2 + ops.reshape(u, (-1, 1)) * system.Bd[0][None, :]
        return ops.reshape(m2, (-1, md, n))
    return ops.einsum("bdj,dji->bdi", m, Ad_T) + u[:, :, None] * system.Bd[None]
