"""Fixtures of the torch backend's tests."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

try:
    import lmu_torch.execution as execution
    import lmu_torch.fused as fused
    import lmu_torch.parts as parts
    import lmu_torch.recurrence as recurrence
    import torch
except ImportError:  # the tests of this folder skip themselves
    torch = None


@pytest.fixture
def two_threads() -> Iterator[None]:
    """At least two intra-op threads (the loops split the batch into at most that many)."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(2, before))
    yield
    torch.set_num_threads(before)


@pytest.fixture
def part_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of batch parts of each loop run (so that a split cannot go untested)."""
    calls: list[int] = []
    real = parts.in_parts

    def spy(fn: Any, count: int) -> Any:
        calls.append(count)
        return real(fn, count)

    monkeypatch.setattr(parts, "in_parts", spy)
    return calls


@pytest.fixture(params=[1, 2], ids=["1-part", "2-parts"])
def n_parts(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, two_threads: None
) -> int:
    """Loops in one part, or in two (down to one batch row each)."""
    monkeypatch.setattr(parts, "MAX_PARTS", request.param)
    monkeypatch.setattr(parts, "MIN_PART_ROWS", 1)
    return int(request.param)


@pytest.fixture
def fused_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of the fused loop made by the layers (so a fallback cannot pass)."""
    calls: list[int] = []
    real = execution.fused_recurrence

    def spy(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(execution, "fused_recurrence", spy)
    return calls


@pytest.fixture(params=["numpy", "torch"])
def tanh_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The step loops' tanh through NumPy (where it applies) or through torch.

    ``numpy`` says which; ``used`` holds, per stored block of outputs, whether NumPy applied
    it (so that neither path goes untested).
    """
    path = SimpleNamespace(numpy=request.param == "numpy", used=[])
    real = recurrence.tanh_array

    def spy(t: Any, activation: str) -> Any:
        arr = real(t, activation) if path.numpy else None
        path.used.append(arr is not None)
        return arr

    monkeypatch.setattr(recurrence, "tanh_array", spy)
    monkeypatch.setattr(fused, "tanh_array", spy)
    return path
