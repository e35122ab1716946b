"""The Keras backend against the lmu.testing conformance kit (every option, float64).

Runs on whichever Keras backend KERAS_BACKEND selects (tox runs it on TensorFlow and JAX;
tests/backend_keras/conftest.py enables JAX's float64).
"""

from __future__ import annotations

import pytest

pytest.importorskip("keras")

import lmu.testing  # noqa: E402

(
    test_matches_reference,
    test_bad_configs,
    test_bad_inputs,
    test_bad_weights,
) = lmu.testing.make_conformance_tests("keras")
