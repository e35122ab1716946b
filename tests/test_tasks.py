"""The locally generated tasks: delay and Mackey-Glass."""

from __future__ import annotations

import numpy as np
import pytest

from lmu.tasks import delay_task, mackey_glass, prediction_windows


def test_delay_task_targets_are_the_delayed_input() -> None:
    x, y = delay_task(3, 200, 25, seed=1)
    assert x.shape == y.shape == (3, 200, 1)
    np.testing.assert_array_equal(y[:, 25:], x[:, :-25])
    np.testing.assert_array_equal(y[:, :25], 0.0)
    np.testing.assert_allclose(np.sqrt(np.mean(x**2, axis=1)), 1.0, rtol=1e-9)


def test_delay_task_is_band_limited_and_seeded() -> None:
    x, _ = delay_task(2, 512, 0, cutoff=0.05, seed=3)
    power = np.abs(np.fft.rfft(x[..., 0], axis=1)) ** 2
    freqs = np.fft.rfftfreq(512)
    assert power[:, freqs > 0.05].max() < 1e-20 * power.max()
    again, _ = delay_task(2, 512, 0, cutoff=0.05, seed=3)
    np.testing.assert_array_equal(x, again)
    other, _ = delay_task(2, 512, 0, cutoff=0.05, seed=4)
    assert not np.allclose(x, other)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_sequences": 0}, r"n_sequences must be a positive int \(got 0\)"),
        ({"delay": 100}, r"delay must be in \[0, length=100\) \(got 100\)"),
        ({"delay": -1}, r"delay must be in \[0, length=100\) \(got -1\)"),
        ({"cutoff": 0.7}, r"cutoff must be in \(0, 0.5\] cycles per step \(got 0.7\)"),
    ],
)
def test_delay_task_errors(kwargs: dict, match: str) -> None:
    args = {"n_sequences": 2, "length": 100, "delay": 5} | kwargs
    with pytest.raises(ValueError, match=match):
        delay_task(**args)


def test_mackey_glass_satisfies_its_equation() -> None:
    """Central differences of the fine series match the right-hand side."""
    tau, beta, gamma, power = 17.0, 0.2, 0.1, 10.0
    dt = 0.1
    x = mackey_glass(4000, tau=tau, dt=dt, substeps=4, discard=0)
    lag = int(round(tau / dt))
    t = np.arange(lag + 1, x.size - 1)
    derivative = (x[t + 1] - x[t - 1]) / (2 * dt)
    lagged = x[t - lag]
    expected = beta * lagged / (1 + lagged**power) - gamma * x[t]
    np.testing.assert_allclose(derivative, expected, atol=2e-3)


def test_mackey_glass_is_bounded_and_chaotic_range() -> None:
    x = mackey_glass(2000)
    assert x.shape == (2000,)
    assert 0.2 < x.min() < 0.6 and 1.1 < x.max() < 1.5
    # not periodic with a short period: autocorrelation decays
    z = x - x.mean()
    ac = np.correlate(z, z, "full")[z.size - 1 :] / (z @ z)
    assert ac[50:500].min() < 0.0


def test_mackey_glass_errors() -> None:
    with pytest.raises(ValueError, match=r"tau must be > 0 and finite \(got -1\)"):
        mackey_glass(10, tau=-1)
    with pytest.raises(ValueError, match=r"n_steps must be a positive int \(got 0\)"):
        mackey_glass(0)


def test_prediction_windows() -> None:
    series = np.arange(30.0)
    x, y = prediction_windows(series, window=5, horizon=3, stride=2)
    assert x.shape == (12, 5, 1) and y.shape == (12, 1)
    np.testing.assert_array_equal(x[1, :, 0], [2, 3, 4, 5, 6])
    assert y[1, 0] == 6 + 3
    with pytest.raises(ValueError, match="too short for window=28"):
        prediction_windows(series, window=28, horizon=3)
