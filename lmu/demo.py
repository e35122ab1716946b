"""``python -m lmu demo``: train a small LMU on a task generated locally, in any backend.

The core side of the demo: the tasks (through :mod:`lmu.tasks`, no download), the trivial
baselines, the metric, the progress bar, the result table and the plot.  The framework code
lives in each backend's own demo module (``lmu_torch.demo``, ``lmu_keras.demo``), imported
only when the demo runs, so ``import lmu.demo`` imports no framework.

A backend's demo module provides four functions:

``build_model(config, input_shape, output_d, seed) -> model``
    The LMU layer of ``config`` (an :class:`lmu.LMUConfig`) on inputs of shape
    ``(batch, *input_shape)`` followed by a linear head with ``output_d`` outputs (per step
    when ``config.return_sequences``), its weights initialised from ``seed``.
``count_params(model) -> int``
    The number of trainable weights.
``train(model, x, y, *, epochs, batch_size, learning_rate, seed, callback) -> None``
    Adam on the mean squared error over NumPy arrays, shuffled with ``seed``;
    ``callback(epoch, batch, n_batches, loss)`` after every batch (0-based epoch and batch).
``predict(model, x) -> ndarray``
    The model's outputs as a float64 NumPy array.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import os
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, TextIO

import numpy as np

from ._registry import get_backend
from .config import LMUConfig
from .system import impulse_response, legendre_decoder
from .tasks import delay_task, mackey_glass, prediction_windows

__all__ = [
    "DEMO_MODULES",
    "TASKS",
    "DemoError",
    "DemoResult",
    "DemoTask",
    "ProgressBar",
    "format_table",
    "load_backend_demo",
    "make_task",
    "nrmse",
    "run_demo",
    "write_plot",
]

#: Backend name -> the module holding its demo glue (imported only when the demo runs).
DEMO_MODULES: dict[str, str] = {"torch": "lmu_torch.demo", "keras": "lmu_keras.demo"}
#: The tasks the demo generates.
TASKS: tuple[str, ...] = ("delay", "mackey-glass")


class DemoError(ValueError):
    """A demo argument is invalid (the message names it, the value and what is allowed)."""


# -- tasks and baselines --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DemoTask:
    """A generated task: data, the LMU to train on it, training settings and baselines.

    Attributes
    ----------
    name : str
        One of :data:`TASKS`.
    title : str
        One line saying what is learned.
    config : LMUConfig
        The LMU layer (a linear head follows it).
    x_train, y_train, x_test, y_test : ndarray
        Inputs ``(n, steps, 1)``; targets ``(n, steps, 1)`` per step or ``(n, 1)``.
    epochs, batch_size : int
    learning_rate : float
    baselines : dict of str to ndarray
        Trivial predictions of ``y_test``, by name.
    score_from : int
        With targets per step, the first step scored (the steps before it, while the memory's
        window fills up, are trained on but not scored).
    """

    name: str
    title: str
    config: LMUConfig
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    epochs: int
    batch_size: int
    learning_rate: float
    baselines: dict[str, np.ndarray]
    score_from: int = 0

    def score(self, prediction: np.ndarray) -> float:
        """NRMSE of a prediction of ``y_test`` (per-step targets from ``score_from`` on)."""
        target = self.y_test
        if target.ndim == 3:
            return nrmse(prediction[:, self.score_from :], target[:, self.score_from :])
        return nrmse(prediction, target)


def nrmse(prediction: np.ndarray, target: np.ndarray) -> float:
    """Normalised root-mean-square error: ``RMSE(prediction, target) / std(target)``.

    1.0 is what predicting the target's mean scores; 0.0 is a perfect prediction.

    Parameters
    ----------
    prediction, target : ndarray of the same shape

    Returns
    -------
    float

    Raises
    ------
    ValueError
        When the shapes differ or the target is constant.
    """
    p = np.asarray(prediction, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from target shape {t.shape}")
    scale = float(np.std(t))
    if not scale > 0:
        raise ValueError("target is constant: NRMSE is undefined")
    return float(np.sqrt(np.mean((p - t) ** 2)) / scale)


def _delay_task(seed: int, quick: bool) -> DemoTask:
    theta, r, order = 100, 0.5, 16
    delay = int(round(r * theta))
    length = 300 if quick else 400
    n_train, n_test = (192, 16) if quick else (256, 32)
    x_train, y_train = delay_task(n_train, length, delay, cutoff=0.05, seed=seed)
    x_test, y_test = delay_task(n_test, length, delay, cutoff=0.05, seed=seed + 10_000)
    config = LMUConfig(
        memory_d=1, order=order, theta=float(theta), hidden_cell=None, return_sequences=True
    )
    return DemoTask(
        name="delay",
        title=(
            f"delay: output the input of r*theta = {r} * {theta} = {delay} steps ago "
            f"(band-limited noise, {length} steps per sequence, scored from step {theta} on)"
        ),
        config=config,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        epochs=8 if quick else 20,
        batch_size=16,
        learning_rate=0.03,
        baselines={"predict zero": np.zeros_like(y_test), "copy the current input": x_test},
        score_from=theta,
    )


def _mackey_glass_task(seed: int, quick: bool) -> DemoTask:
    del seed  # the series is deterministic; the seed drives the model's initialisation
    horizon, window = 15, 64
    n_steps = 3000 if quick else 6000
    series = mackey_glass(n_steps, tau=17.0)
    split = int(0.7 * n_steps)
    mean, std = series[:split].mean(), series[:split].std()
    series = (series - mean) / std
    x_train, y_train = prediction_windows(series[:split], window, horizon, stride=1)
    x_test, y_test = prediction_windows(series[split:], window, horizon, stride=1)
    config = LMUConfig(
        memory_d=1,
        order=12,
        theta=float(window),
        hidden_cell={"type": "dense", "units": 48, "activation": "tanh"},
        input_to_hidden=True,
        return_sequences=False,
    )
    return DemoTask(
        name="mackey-glass",
        title=(
            f"mackey-glass: predict the series {horizon} steps ahead (tau=17) from the "
            f"last {window} steps"
        ),
        config=config,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        epochs=10 if quick else 25,
        batch_size=32,
        learning_rate=0.005,
        baselines={
            "last value": x_test[:, -1, :].copy(),
            "training mean": np.zeros_like(y_test),  # the series is centred on it
        },
    )


def make_task(task: str, seed: int = 0, quick: bool = False) -> DemoTask:
    """Generate the data, the LMU config and the baselines of a demo task.

    Parameters
    ----------
    task : {"delay", "mackey-glass"}
    seed : int
        Seed of the generated data (the delay task) and of the model.
    quick : bool
        A smaller setting (less data, fewer epochs), for tests and slow machines.

    Returns
    -------
    DemoTask

    Raises
    ------
    DemoError
        For an unknown task or a bad seed.
    """
    if task not in TASKS:
        raise DemoError(f"task must be one of {', '.join(TASKS)} (got {task!r})")
    seed = _check_seed(seed)
    return _delay_task(seed, quick) if task == "delay" else _mackey_glass_task(seed, quick)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DemoError(f"seed must be an int >= 0 (got {seed!r})")
    return int(seed)


# -- backends -------------------------------------------------------------------------------


def load_backend_demo(backend: str | None = None) -> tuple[str, ModuleType]:
    """Select a backend and import its demo module.

    Parameters
    ----------
    backend : str, optional
        ``"torch"`` or ``"keras"``; by default :func:`lmu.get_backend`'s choice
        (``LMU_BACKEND``, else the first installed).

    Returns
    -------
    name : str
    module : module
        The backend's demo glue (see this module's docstring).

    Raises
    ------
    DemoError
        For a backend without a demo (the message names the supported ones).
    lmu.UnknownBackendError, lmu.BackendNotInstalledError
        From :func:`lmu.get_backend` (the latter with the ``pip install`` line).
    """
    supported = " or ".join(repr(n) for n in DEMO_MODULES)
    if backend is not None and backend not in DEMO_MODULES:
        raise DemoError(f"the demo runs with backend {supported} (got {backend!r})")
    chosen = get_backend(backend)
    name = backend if backend is not None else chosen.name
    if name not in DEMO_MODULES:
        raise DemoError(
            f"the demo runs with backend {supported}; the selected backend is {name!r} "
            "(pass --backend or set LMU_BACKEND)"
        )
    return name, importlib.import_module(DEMO_MODULES[name])


# -- progress bar ---------------------------------------------------------------------------


class ProgressBar:
    """A one-line text progress bar (no dependency).

    On a terminal the line is redrawn in place (at most ``fps`` times a second); elsewhere
    (a log file, a pipe) one line is printed per ``log_every`` fraction of the work.

    Parameters
    ----------
    total : int
        Units of work (e.g. batches over all epochs).
    stream : text file, optional
        Where to draw; ``sys.stdout`` by default.
    width : int
        Characters of the bar.
    label : str
        Shown before the bar.
    fps : float
        Most redraws per second on a terminal.
    log_every : float
        Fraction of the work between lines off a terminal.
    """

    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        width: int = 30,
        label: str = "training",
        fps: float = 10.0,
        log_every: float = 0.25,
    ) -> None:
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ValueError(f"total must be a positive int (got {total!r})")
        self.total = total
        self.stream = stream if stream is not None else sys.stdout
        self.width = width
        self.label = label
        self.interval = 1.0 / fps
        self.log_every = log_every
        self.start = time.perf_counter()
        self.done = 0
        self._last_draw = -math.inf
        self._next_log = log_every
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty()) if callable(isatty) else False

    def render(self, done: int, text: str = "") -> str:
        """The bar's text for ``done`` units of work, with ``text`` after it."""
        frac = min(max(done / self.total, 0.0), 1.0)
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        line = f"{self.label} [{bar}] {100 * frac:3.0f}%  {elapsed:5.1f}s"
        return f"{line}  {text}" if text else line

    def update(self, done: int, text: str = "") -> None:
        """Record progress (``done`` units so far) and redraw when due."""
        self.done = done
        now = time.perf_counter()
        if self.tty:
            if now - self._last_draw >= self.interval or done >= self.total:
                self._last_draw = now
                self.stream.write("\r" + self.render(done, text) + "\033[K")
                self.stream.flush()
        elif done / self.total + 1e-9 >= self._next_log:
            while self._next_log <= done / self.total + 1e-9:
                self._next_log += self.log_every
            self.stream.write(self.render(done, text) + "\n")
            self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# -- the run --------------------------------------------------------------------------------


@dataclasses.dataclass
class DemoResult:
    """What :func:`run_demo` measured.

    Attributes
    ----------
    task : DemoTask
    backend : str
    framework : str
        The framework and its version, e.g. ``"torch 2.13.0"``.
    n_params : int
        Trainable weights of the model.
    prediction : ndarray
        The model's prediction of ``task.y_test``.
    score : float
        NRMSE of the prediction on the test data.
    baseline_scores : dict of str to float
        NRMSE of each trivial baseline.
    train_seconds, total_seconds : float
        Training time, and the whole run (backend import, data, training, plot).
    final_loss : float
        The training loss of the last batch.
    plot_path : str or None
        Where the PNG went (None without matplotlib).
    """

    task: DemoTask
    backend: str
    framework: str
    n_params: int
    prediction: np.ndarray
    score: float
    baseline_scores: dict[str, float]
    train_seconds: float
    total_seconds: float
    final_loss: float
    plot_path: str | None = None

    @property
    def best_baseline(self) -> tuple[str, float]:
        """The name and NRMSE of the best trivial baseline."""
        name = min(self.baseline_scores, key=self.baseline_scores.__getitem__)
        return name, self.baseline_scores[name]

    @property
    def beats_baseline(self) -> bool:
        """Whether the LMU's NRMSE is below every baseline's."""
        return self.score < self.best_baseline[1]


def _describe(config: LMUConfig) -> str:
    cell = config.hidden_cell
    if isinstance(cell, dict):
        hidden = f"{cell['type']} hidden cell of {cell['units']}"
        if cell.get("activation"):
            hidden += f" ({cell['activation']})"
    else:
        hidden = "no hidden cell"
    theta = config.theta
    theta_text = f"{theta:g}" if isinstance(theta, float) else str(theta)
    return (
        f"LMU(memory_d={config.memory_d}, order={config.order}, theta={theta_text}, "
        f"{hidden}) + linear head"
    )


def format_table(result: DemoResult) -> str:
    """The result table the demo prints.

    Parameters
    ----------
    result : DemoResult

    Returns
    -------
    str
    """
    task = result.task
    rows = [(f"LMU ({result.backend})", result.score, f"{result.train_seconds:.1f} s train")]
    rows += [(f"baseline: {n}", s, "-") for n, s in result.baseline_scores.items()]
    name_w = max(len(r[0]) for r in rows)
    lines = [
        f"task:  {task.title}",
        f"model: {_describe(task.config)}, {result.n_params:,} weights, {result.framework}",
        f"data:  {len(task.x_train):,} training and {len(task.x_test):,} test sequences, "
        f"{task.epochs} epochs",
        "",
        f"{'':<{name_w}}  {'NRMSE (test)':>12}  time",
    ]
    lines += [f"{n:<{name_w}}  {s:>12.4f}  {t}" for n, s, t in rows]
    best_name, best = result.best_baseline
    verdict = "beats" if result.beats_baseline else "does NOT beat"
    lines += [
        "",
        f"The LMU {verdict} the best trivial baseline ({best_name}): "
        f"its error is {100 * result.score / best:.1f}% of the baseline's.",
        f"Total time {result.total_seconds:.1f} s.",
    ]
    return "\n".join(lines)


def run_demo(
    backend: str | None = None,
    task: str = "delay",
    epochs: int | None = None,
    out: str | os.PathLike[str] | None = None,
    seed: int = 0,
    quick: bool = False,
    stream: TextIO | None = None,
    plot: bool = True,
) -> DemoResult:
    """Train a small LMU on a generated task, print the result table, write the plot.

    Parameters
    ----------
    backend : str, optional
        ``"torch"`` or ``"keras"``; by default :func:`lmu.get_backend`'s choice.
    task : {"delay", "mackey-glass"}
    epochs : int, optional
        Training epochs (default: the task's).
    out : path, optional
        The PNG to write; default ``lmu-demo-<task>-<backend>.png`` in the current directory.
    seed : int
        Seeds the data and the model.
    quick : bool
        Less data and fewer epochs.
    stream : text file, optional
        Where to print (``sys.stdout`` by default).
    plot : bool
        Write the PNG (needs matplotlib; without it a message says how to install it).

    Returns
    -------
    DemoResult

    Raises
    ------
    DemoError
        For a bad task, epoch count, seed or backend (the message names the value).
    lmu.UnknownBackendError, lmu.BackendNotInstalledError
        When the backend cannot be used.
    """
    start = time.perf_counter()
    stream = stream if stream is not None else sys.stdout
    if epochs is not None and (
        isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1
    ):
        raise DemoError(f"epochs must be a positive int (got {epochs!r})")
    spec = make_task(task, seed, quick)  # checks task and seed
    if epochs is not None:
        spec = dataclasses.replace(spec, epochs=int(epochs))
    name, glue = load_backend_demo(backend)
    framework = _framework_version(glue, name)
    has_mpl = _has_module("matplotlib")
    if plot and not has_mpl:
        print(
            "note: matplotlib is not installed, so no plot will be written "
            '(pip install "lmu[demo]" or pip install matplotlib)',
            file=stream,
        )
    print(f"lmu demo: task {spec.name!r}, backend {name!r} ({framework})", file=stream)

    model = glue.build_model(spec.config, spec.x_train.shape[1:], spec.y_train.shape[-1], seed)
    n_batches = math.ceil(len(spec.x_train) / spec.batch_size)
    bar = ProgressBar(spec.epochs * n_batches, stream=stream)
    last_loss = [math.nan]

    def callback(epoch: int, batch: int, n_batch: int, loss: float) -> None:
        last_loss[0] = float(loss)
        bar.update(
            epoch * n_batches + batch + 1, f"epoch {epoch + 1}/{spec.epochs}  loss {loss:.4g}"
        )

    t0 = time.perf_counter()
    glue.train(
        model,
        spec.x_train,
        spec.y_train,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        seed=seed,
        callback=callback,
    )
    train_seconds = time.perf_counter() - t0
    bar.close()
    prediction = np.asarray(glue.predict(model, spec.x_test), dtype=np.float64)
    prediction = prediction.reshape(spec.y_test.shape)
    result = DemoResult(
        task=spec,
        backend=name,
        framework=framework,
        n_params=int(glue.count_params(model)),
        prediction=prediction,
        score=spec.score(prediction),
        baseline_scores={k: spec.score(v) for k, v in spec.baselines.items()},
        train_seconds=train_seconds,
        total_seconds=math.nan,
        final_loss=last_loss[0],
    )
    if plot and has_mpl:
        path = os.path.abspath(os.fspath(out) if out is not None else _default_out(spec, name))
        write_plot(result, path)
        result.plot_path = path
    result.total_seconds = time.perf_counter() - start
    print("", file=stream)
    print(format_table(result), file=stream)
    if result.plot_path is not None:
        print(f"Plot written to {result.plot_path}", file=stream)
    return result


def _default_out(task: DemoTask, backend: str) -> str:
    return f"lmu-demo-{task.name}-{backend}.png"


def _framework_version(glue: ModuleType, name: str) -> str:
    version: Callable[[], str] | None = getattr(glue, "framework_version", None)
    return version() if version is not None else name


# -- the plot -------------------------------------------------------------------------------


def write_plot(result: DemoResult, path: str | os.PathLike[str]) -> None:
    """Write the demo's PNG: prediction against target, the Legendre basis, the impulse response.

    Parameters
    ----------
    result : DemoResult
    path : path
        The PNG file.

    Raises
    ------
    ImportError
        When matplotlib is missing (the message says how to install it).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            'the demo\'s plot needs matplotlib: pip install "lmu[demo]" (or pip install matplotlib)'
        ) from exc
    task, config = result.task, result.task.config
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2)
    ax = fig.add_subplot(grid[0, :])
    if task.name == "delay":
        steps = np.arange(task.x_test.shape[1])
        ax.plot(steps, task.x_test[0, :, 0], color="0.75", lw=1, label="input")
        ax.plot(steps, task.y_test[0, :, 0], color="k", lw=1.5, label="target (delayed input)")
        ax.plot(steps, result.prediction[0, :, 0], color="C3", lw=1.2, ls="--", label="LMU")
        ax.axvspan(0, task.score_from, color="0.93", zorder=0, label="window filling (not scored)")
        ax.set_xlabel("time step (one test sequence)")
    else:
        n = min(600, len(task.y_test))
        steps = np.arange(n)
        ax.plot(steps, task.y_test[:n, 0], color="k", lw=1.5, label="target")
        ax.plot(steps, result.prediction[:n, 0], color="C3", lw=1.2, ls="--", label="LMU")
        ax.plot(steps, task.baselines["last value"][:n, 0], color="0.7", lw=1, label="last value")
        ax.set_xlabel("time step of the test series (one window per step)")
    ax.set_title(
        f"{task.name}: LMU ({result.backend}) NRMSE {result.score:.3f}; "
        f"best trivial baseline {result.best_baseline[1]:.3f}"
    )
    ax.legend(loc="upper right", fontsize="small", ncols=3)

    theta = float(np.max(np.atleast_1d(config.theta)))
    n_basis = min(config.order, 6)
    r = np.linspace(0.0, 1.0, 201)
    basis = legendre_decoder(config.order, r)
    ax = fig.add_subplot(grid[1, 0])
    for i in range(n_basis):
        ax.plot(r * theta, basis[:, i], lw=1.2, label=f"$P_{i}$")
    ax.set_title(r"Legendre basis: $u(t - r\theta) \approx \sum_i P_i(2r - 1)\, m_i(t)$")
    ax.set_xlabel("steps ago (r * theta)")
    ax.legend(fontsize="x-small", ncols=2)

    length = int(1.5 * theta)
    H = impulse_response(config.order, theta, length, discretizer=config.discretizer)
    ax = fig.add_subplot(grid[1, 1])
    for i in range(n_basis):
        ax.plot(np.arange(length), H[:, i], lw=1.2, label=f"$m_{i}$")
    ax.axvline(theta, color="0.5", ls=":", lw=1)
    ax.set_title(rf"impulse response $H[k] = A_d^k B_d$ (order {config.order}, $\theta$={theta:g})")
    ax.set_xlabel("k (steps)")
    ax.legend(fontsize="x-small", ncols=2)
    fig.savefig(os.fspath(path), dpi=100)


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
