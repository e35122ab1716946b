"""The torch backend against the lmu.testing conformance kit (every option, float64)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import lmu.testing  # noqa: E402

(
    test_matches_reference,
    test_bad_configs,
    test_bad_inputs,
    test_bad_weights,
) = lmu.testing.make_conformance_tests("torch")
