"""The benchmark runner's combination of rounds (pure Python: no framework needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def run() -> Any:
    spec = importlib.util.spec_from_file_location("lmu_benchmark_run", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(case: str, impl: str, median: float, rss: float = 100.0) -> dict[str, Any]:
    return dict(impl=impl, case=case, mode="m", median_s=median, min_s=median / 2, peak_rss_mb=rss)


def test_rounds_combine_to_medians_and_per_round_ratios(run: Any) -> None:
    rounds = [
        [_result("E", "keras-lmu", 0.8), _result("E", "torch", 0.4, 90.0)],
        [_result("E", "keras-lmu", 0.9), _result("E", "torch", 0.6, 120.0)],
        [_result("E", "keras-lmu", 0.7), _result("E", "torch", 0.5, 80.0)],
    ]
    base, mine = run.combine_rounds(rounds)
    assert base["median_s"] == pytest.approx(0.8)
    assert mine["median_s"] == pytest.approx(0.5)
    assert mine["min_s"] == pytest.approx(0.2)
    assert mine["peak_rss_mb"] == 120.0
    assert mine["ratios"] == pytest.approx([2.0, 1.5, 1.4])
    assert "ratios" not in base
    assert "1.6x" in run.table([base, mine])  # 0.8 / 0.5


def test_one_round_is_returned_as_is_and_errors_are_skipped(run: Any) -> None:
    one = [[_result("A", "keras-lmu", 1.0), _result("A", "torch", 0.01)]]
    assert run.combine_rounds(one) is one[0]
    failed = {"impl": "torch", "case": "A", "error": "timed out"}
    rounds = [
        [_result("A", "keras-lmu", 1.0), failed],
        [_result("A", "keras-lmu", 1.0), _result("A", "torch", 0.02)],
    ]
    mine = run.combine_rounds(rounds)[1]
    assert mine["median_s"] == pytest.approx(0.02)
    assert mine["rounds"] == 1
    assert mine["ratios"] == pytest.approx([50.0])


def test_gpu_memory_is_a_column_of_its_own(run: Any) -> None:
    rounds = [
        [dict(_result("C", "torch", 0.002), peak_cuda_mb=300.0)],
        [dict(_result("C", "torch", 0.003), peak_cuda_mb=500.0)],
    ]
    (mine,) = run.combine_rounds(rounds)
    assert mine["peak_cuda_mb"] == 500.0
    head, _, row = run.table([mine]).splitlines()
    assert "GPU MB" in head and row.split()[5:7] == ["100", "500"]
    assert "GPU MB" not in run.table([_result("C", "torch", 0.002)])
