"""Tasks generated locally (no download): the delay task and Mackey-Glass prediction."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["delay_task", "mackey_glass", "prediction_windows"]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int (got {value!r})")
    return int(value)


def delay_task(
    n_sequences: int,
    length: int,
    delay: int,
    cutoff: float = 0.1,
    seed: int | np.random.Generator | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Band-limited white noise and the same signal delayed: the LMU's signature task.

    Parameters
    ----------
    n_sequences : int
        Number of sequences.
    length : int
        Steps per sequence.
    delay : int
        The target at step t is the input at step ``t - delay`` (zero before the start);
        ``0 <= delay < length``.
    cutoff : float
        Highest frequency kept, in cycles per step, in (0, 0.5].
    seed : int or Generator, optional

    Returns
    -------
    x, y : ndarray, shape (n_sequences, length, 1)
        Inputs normalised to unit RMS per sequence, and the delayed targets.

    Raises
    ------
    ValueError
        For a bad count, length, delay or cutoff.
    """
    n_sequences = _positive_int("n_sequences", n_sequences)
    length = _positive_int("length", length)
    if isinstance(delay, bool) or not isinstance(delay, (int, np.integer)):
        raise ValueError(f"delay must be an int (got {delay!r})")
    if not 0 <= delay < length:
        raise ValueError(f"delay must be in [0, length={length}) (got {delay})")
    if not (isinstance(cutoff, (int, float)) and 0 < cutoff <= 0.5):
        raise ValueError(f"cutoff must be in (0, 0.5] cycles per step (got {cutoff!r})")
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal((n_sequences, length)), axis=1)
    freqs = np.fft.rfftfreq(length)
    spectrum[:, freqs > cutoff] = 0.0
    spectrum[:, 0] = 0.0  # no DC offset
    x = np.fft.irfft(spectrum, n=length, axis=1)
    x /= np.sqrt(np.mean(x**2, axis=1, keepdims=True)) + 1e-12
    y = np.zeros_like(x)
    y[:, delay:] = x[:, : length - delay]
    return x[..., None], y[..., None]


def mackey_glass(
    n_steps: int,
    tau: float = 17.0,
    beta: float = 0.2,
    gamma: float = 0.1,
    power: float = 10.0,
    dt: float = 1.0,
    substeps: int = 10,
    x0: float = 1.2,
    discard: int = 250,
) -> np.ndarray:
    """A Mackey-Glass series: ``dx/dt = beta x(t - tau) / (1 + x(t - tau)^power) - gamma x``.

    Integrated with fourth-order Runge-Kutta at ``dt / substeps`` (the delayed term is
    interpolated linearly on the integration grid), sampled every ``dt``.

    Parameters
    ----------
    n_steps : int
        Samples returned.
    tau, beta, gamma, power : float
        The equation's constants (tau=17 is the chaotic regime used in the LMU paper).
    dt : float
        Sampling interval.
    substeps : int
        Integration steps per sample.
    x0 : float
        Constant history before t=0.
    discard : int
        Initial samples dropped (the transient).

    Returns
    -------
    ndarray, shape (n_steps,)

    Raises
    ------
    ValueError
        For non-positive counts, tau or dt.
    """
    n_steps = _positive_int("n_steps", n_steps)
    substeps = _positive_int("substeps", substeps)
    if isinstance(discard, bool) or not isinstance(discard, (int, np.integer)) or discard < 0:
        raise ValueError(f"discard must be an int >= 0 (got {discard!r})")
    for name, value in (("tau", tau), ("dt", dt)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be > 0 and finite (got {value!r})")
    h = dt / substeps
    lag = tau / h  # delay in integration steps
    total = (n_steps + discard) * substeps
    x = np.empty(total + 1)
    x[0] = x0

    def delayed(i: float) -> float:
        """x at integration index i - lag (the history is x0), linearly interpolated."""
        j = i - lag
        if j <= 0:
            return x0
        lo = int(math.floor(j))
        w = j - lo
        return x[lo] if w == 0 else (1 - w) * x[lo] + w * x[lo + 1]

    def rhs(value: float, lagged: float) -> float:
        return beta * lagged / (1.0 + lagged**power) - gamma * value

    for i in range(total):
        d0, d_half, d1 = delayed(i), delayed(i + 0.5), delayed(i + 1)
        k1 = rhs(x[i], d0)
        k2 = rhs(x[i] + 0.5 * h * k1, d_half)
        k3 = rhs(x[i] + 0.5 * h * k2, d_half)
        k4 = rhs(x[i] + h * k3, d1)
        x[i + 1] = x[i] + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    samples = x[::substeps][: n_steps + discard]
    return samples[discard:]


def prediction_windows(
    series: np.ndarray, window: int, horizon: int, stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a series into (input window, value ``horizon`` steps after the window) pairs.

    Parameters
    ----------
    series : ndarray, shape (n,)
    window : int
        Steps per input window.
    horizon : int
        How far past the window's last step the target lies (>= 1).
    stride : int
        Steps between window starts.

    Returns
    -------
    x : ndarray, shape (count, window, 1)
    y : ndarray, shape (count, 1)

    Raises
    ------
    ValueError
        For bad sizes, or a series too short for one window.
    """
    series = np.asarray(series, dtype=np.float64)
    if series.ndim != 1:
        raise ValueError(f"series must be 1-d (got shape {series.shape})")
    window = _positive_int("window", window)
    horizon = _positive_int("horizon", horizon)
    stride = _positive_int("stride", stride)
    count = (series.size - window - horizon) // stride + 1
    if count < 1:
        raise ValueError(
            f"series of length {series.size} is too short for window={window} + horizon={horizon}"
        )
    starts = np.arange(count) * stride
    x = series[starts[:, None] + np.arange(window)[None, :]]
    y = series[starts + window - 1 + horizon]
    return x[..., None], y[:, None]
