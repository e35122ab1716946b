"""The core side of ``python -m lmu demo``: no framework needed.

A tiny NumPy "backend" (least squares on the LMU memory computed with lmu.impulse_response)
stands in for the framework glue, so the whole pipeline runs in the core env.
"""

from __future__ import annotations

import dataclasses
import io
import math
import subprocess
import sys
import types
from typing import Any

import numpy as np
import pytest
from scipy.signal import fftconvolve

import lmu
import lmu.demo as demo
from lmu.__main__ import main

FRAMEWORKS = ("torch", "keras", "tensorflow", "jax", "matplotlib", "lmu_torch", "lmu_keras")


# -- a NumPy stand-in for a backend's demo module ---------------------------------------------


def _memory(config: lmu.LMUConfig, x: np.ndarray) -> np.ndarray:
    """The LMU memory (memory_d=1, no kernel scaling) of x (n, T, 1): (n, T, order)."""
    T = x.shape[1]
    H = lmu.impulse_response(config.order, config.theta, T)
    return np.stack(
        [fftconvolve(x[:, :, 0], H[None, :, i], axes=1)[:, :T] for i in range(config.order)],
        axis=-1,
    )


def _features(model: dict[str, Any], x: np.ndarray) -> np.ndarray:
    m = _memory(model["config"], x)
    if not model["config"].return_sequences:
        m = m[:, -1]
    return np.concatenate([m, np.ones(m.shape[:-1] + (1,))], axis=-1)


def _numpy_glue() -> types.ModuleType:
    glue = types.ModuleType("lmu_demo_numpy_glue")

    def build_model(config: lmu.LMUConfig, input_shape: Any, output_d: int, seed: int) -> dict:
        return {"config": config, "w": np.zeros((config.order + 1, output_d)), "calls": []}

    def train(model: dict, x: np.ndarray, y: np.ndarray, **kw: Any) -> None:
        f = _features(model, x)
        f2, y2 = f.reshape(-1, f.shape[-1]), y.reshape(-1, y.shape[-1])
        model["w"] = np.linalg.lstsq(f2, y2, rcond=None)[0]
        n_batches = math.ceil(len(x) / kw["batch_size"])
        for epoch in range(kw["epochs"]):
            for batch in range(n_batches):
                kw["callback"](epoch, batch, n_batches, 0.5)
                model["calls"].append((epoch, batch))

    glue.build_model = build_model  # type: ignore[attr-defined]
    glue.train = train  # type: ignore[attr-defined]
    glue.predict = lambda model, x: _features(model, x) @ model["w"]  # type: ignore[attr-defined]
    glue.count_params = lambda model: model["w"].size  # type: ignore[attr-defined]
    glue.framework_version = lambda: "numpy " + np.__version__  # type: ignore[attr-defined]
    return glue


@pytest.fixture
def numpy_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register the NumPy glue as the demo backend "numpy"."""
    monkeypatch.setitem(sys.modules, "lmu_demo_numpy_glue", _numpy_glue())
    monkeypatch.setitem(demo.DEMO_MODULES, "numpy", "lmu_demo_numpy_glue")
    monkeypatch.setattr(demo, "get_backend", lambda name=None: types.SimpleNamespace(name="numpy"))
    return "numpy"


# -- the pipeline -----------------------------------------------------------------------------


@pytest.mark.parametrize("task", demo.TASKS)
def test_pipeline_with_numpy_glue(numpy_backend: str, task: str, tmp_path: Any) -> None:
    out = io.StringIO()
    result = demo.run_demo(
        backend=numpy_backend, task=task, epochs=2, quick=True, out=tmp_path / "p.png",
        stream=out, plot=False,
    )  # fmt: skip
    text = out.getvalue()
    assert result.beats_baseline and result.score < 0.5 * result.best_baseline[1]
    assert result.prediction.shape == result.task.y_test.shape
    assert "NRMSE (test)" in text and "LMU (numpy)" in text and "beats" in text
    for name in result.task.baselines:
        assert f"baseline: {name}" in text
    assert "100%" in text  # the progress bar finished
    assert not (tmp_path / "p.png").exists()  # plot=False


def test_plot_written(numpy_backend: str, tmp_path: Any) -> None:
    pytest.importorskip("matplotlib")
    out = io.StringIO()
    path = tmp_path / "demo.png"
    result = demo.run_demo(backend=numpy_backend, task="delay", epochs=1, quick=True, out=path,
                           stream=out)  # fmt: skip
    assert result.plot_path == str(path) and path.stat().st_size > 10_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Plot written to {path}" in out.getvalue()


def test_without_matplotlib(
    numpy_backend: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # importing matplotlib now fails
    out = io.StringIO()
    result = demo.run_demo(backend=numpy_backend, task="mackey-glass", epochs=1, quick=True,
                           out=tmp_path / "p.png", stream=out)  # fmt: skip
    assert result.plot_path is None and not (tmp_path / "p.png").exists()
    assert "matplotlib is not installed" in out.getvalue() and "lmu[demo]" in out.getvalue()
    with pytest.raises(ImportError, match=r"lmu\[demo\]"):
        demo.write_plot(result, tmp_path / "p.png")


def test_seeded(numpy_backend: str) -> None:
    a = demo.make_task("delay", seed=3, quick=True)
    b = demo.make_task("delay", seed=3, quick=True)
    c = demo.make_task("delay", seed=4, quick=True)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)


# -- tasks, baselines, metric -----------------------------------------------------------------


@pytest.mark.parametrize("task", demo.TASKS)
def test_tasks_and_baselines(task: str) -> None:
    spec = demo.make_task(task, quick=True)
    assert spec.x_train.ndim == 3 and spec.x_train.shape[-1] == 1
    assert spec.y_test.shape[0] == spec.x_test.shape[0]
    assert spec.config.return_sequences == (spec.y_test.ndim == 3)
    scores = {name: spec.score(pred) for name, pred in spec.baselines.items()}
    # the trivial baselines are trivial: the best one is about as bad as predicting the mean
    assert min(scores.values()) == pytest.approx(1.0, abs=0.05), scores
    assert spec.score(spec.y_test) == 0.0


def test_delay_task_is_a_delay() -> None:
    spec = demo.make_task("delay", quick=True)
    delay = int(round(0.5 * spec.config.theta))  # type: ignore[arg-type]
    np.testing.assert_array_equal(spec.y_train[:, delay:], spec.x_train[:, :-delay])
    assert spec.score_from == spec.config.theta


def test_nrmse() -> None:
    t = np.sin(np.linspace(0, 10, 200))
    assert demo.nrmse(t, t) == 0.0
    assert demo.nrmse(np.full_like(t, t.mean()), t) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        demo.nrmse(t[:-1], t)
    with pytest.raises(ValueError, match="constant"):
        demo.nrmse(t, np.ones_like(t))


def test_make_task_errors() -> None:
    with pytest.raises(demo.DemoError, match=r"task must be one of delay, mackey-glass.*'maze'"):
        demo.make_task("maze")
    with pytest.raises(demo.DemoError, match=r"seed must be an int >= 0 \(got -1\)"):
        demo.make_task("delay", seed=-1)


def _fake_result(score: float) -> demo.DemoResult:
    spec = demo.make_task("mackey-glass", quick=True)
    return demo.DemoResult(
        task=spec, backend="torch", framework="torch 9.9", n_params=1234,
        prediction=spec.y_test, score=score,
        baseline_scores={"last value": 1.6, "training mean": 1.0},
        train_seconds=12.34, total_seconds=20.5, final_loss=0.01,
    )  # fmt: skip


def test_table() -> None:
    text = demo.format_table(_fake_result(0.05))
    lines = text.splitlines()
    assert any(line.startswith("LMU (torch)") and "0.0500" in line and "12.3 s" in line
               for line in lines)  # fmt: skip
    assert any(line.startswith("baseline: last value") and "1.6000" in line for line in lines)
    assert "1,234 weights" in text and "torch 9.9" in text and "Total time 20.5 s" in text
    assert "beats the best trivial baseline (training mean)" in text and "5.0%" in text
    bad = demo.format_table(_fake_result(1.2))
    assert "does NOT beat" in bad


def test_best_baseline() -> None:
    result = _fake_result(0.5)
    assert result.best_baseline == ("training mean", 1.0) and result.beats_baseline
    assert not dataclasses.replace(result, score=1.0).beats_baseline


# -- progress bar -----------------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_log() -> None:
    out = io.StringIO()
    bar = demo.ProgressBar(100, stream=out, width=10)
    for i in range(1, 101):
        bar.update(i, f"step {i}")
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # one line per quarter off a terminal
    assert lines[0].startswith("training [##--------]  25%") and lines[0].endswith("step 25")
    assert lines[-1].startswith("training [##########] 100%")


def test_progress_bar_tty() -> None:
    out = _Tty()
    bar = demo.ProgressBar(3, stream=out, width=6, fps=1e9)
    for i in range(1, 4):
        bar.update(i)
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and "[######] 100%" in text


def test_progress_bar_errors() -> None:
    with pytest.raises(ValueError, match=r"total must be a positive int \(got 0\)"):
        demo.ProgressBar(0)


# -- backends ---------------------------------------------------------------------------------


def test_unknown_backend_is_refused_before_any_import() -> None:
    with pytest.raises(demo.DemoError, match=r"backend 'torch' or 'keras' \(got 'jax'\)"):
        demo.run_demo(backend="jax", stream=io.StringIO())


def test_selected_backend_without_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "get_backend", lambda name=None: types.SimpleNamespace(name="mine"))
    with pytest.raises(demo.DemoError, match=r"'torch' or 'keras'; the selected backend is 'mine'"):
        demo.load_backend_demo()


def test_not_installed_backend_exits_cleanly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing(name: str | None = None) -> Any:
        raise lmu.BackendNotInstalledError(f'the lmu backend {name!r} needs it: pip install "x"')

    monkeypatch.setattr(demo, "get_backend", missing)
    assert main(["demo", "--backend", "keras"]) == 2
    err = capsys.readouterr().err
    assert "python -m lmu demo: error:" in err and "'keras'" in err and "pip install" in err


def test_unknown_backend_from_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LMU_BACKEND", "nope")
    assert main(["demo"]) == 2
    assert "unknown lmu backend 'nope'" in capsys.readouterr().err


# -- command line -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--epochs", "0"], "argument --epochs: must be a positive int (got '0')"),
        (["--epochs", "two"], "argument --epochs: must be a positive int (got 'two')"),
        (["--seed", "-3"], "argument --seed: must be an int >= 0 (got '-3')"),
        (["--task", "maze"], "argument --task: invalid choice: 'maze'"),
    ],
)
def test_cli_argument_errors(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", *args])
    assert exc.value.code == 2
    assert expected in capsys.readouterr().err


def test_cli_unknown_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--backend", "jax"]) == 2
    assert "backend 'torch' or 'keras' (got 'jax')" in capsys.readouterr().err


def test_cli_runs_the_demo(
    numpy_backend: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cli.png"
    code = main(["demo", "--backend", "numpy", "--task", "mackey-glass", "--epochs", "1",
                 "--quick", "--seed", "1", "--out", str(path)])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "lmu demo: task 'mackey-glass', backend 'numpy'" in out and "NRMSE (test)" in out
    assert path.exists() == demo._has_module("matplotlib")


def test_info_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    assert capsys.readouterr().out.startswith("lmu ")


def test_no_framework_imported() -> None:
    code = (
        "import sys, lmu.demo, lmu.__main__\n"
        f"print([m for m in {FRAMEWORKS!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
