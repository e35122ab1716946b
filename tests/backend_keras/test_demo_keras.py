"""``python -m lmu demo`` end to end with the Keras backend (tiny settings)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

keras = pytest.importorskip("keras")

import lmu.demo as demo  # noqa: E402


@pytest.mark.parametrize("task", demo.TASKS)
def test_demo_beats_baseline(task: str, tmp_path: Path) -> None:
    out = io.StringIO()
    path = tmp_path / f"{task}.png"
    result = demo.run_demo(backend="keras", task=task, quick=True, out=path, stream=out)
    assert result.backend == "keras" and result.framework.startswith("keras ")
    best = result.best_baseline[1]
    assert result.score < 0.5 * best, out.getvalue()
    assert result.n_params > 0
    if demo._has_module("matplotlib"):
        assert path.stat().st_size > 10_000 and result.plot_path == str(path)
    else:
        assert result.plot_path is None and "matplotlib is not installed" in out.getvalue()


def test_demo_seeded() -> None:
    a = demo.run_demo(backend="keras", epochs=1, quick=True, stream=io.StringIO(), plot=False)
    b = demo.run_demo(backend="keras", epochs=1, quick=True, stream=io.StringIO(), plot=False)
    assert a.score == b.score


def test_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "LMU_BACKEND": "keras"}
    proc = subprocess.run(
        [sys.executable, "-m", "lmu", "demo", "--quick", "--epochs", "2", "--out",
         str(tmp_path / "cli.png")],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "backend 'keras'" in proc.stdout and "LMU (keras)" in proc.stdout
    assert "training [" in proc.stdout and "100%" in proc.stdout
