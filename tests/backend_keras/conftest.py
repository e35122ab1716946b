"""Fixtures for the Keras backend tests: float64, canonical weights, the NumPy reference."""

from __future__ import annotations

import os

os.environ.setdefault("JAX_ENABLE_X64", "1")  # float64 under KERAS_BACKEND=jax
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def float64() -> Iterator[None]:
    """Run a test with Keras' floatx and default dtype policy set to float64."""
    keras = pytest.importorskip("keras")
    old, old_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(old)
    keras.config.set_dtype_policy(old_policy)
