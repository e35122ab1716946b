"""Mackey-Glass prediction: the LMU paper's LMU against an LSTM of about the same size.

The series ``dx/dt = 0.2 x(t-17) / (1 + x(t-17)^10) - 0.1 x`` is chaotic; each model reads it
one step at a time and predicts, at every step, the value 15 steps ahead.  The setup follows
the LMU paper (Voelker, Kajic and Eliasmith, NeurIPS 2019) and its notebook
(``experiments/mackey-glass.ipynb`` in the keras-lmu repository):

* data: 128 series of 5,000 steps after a 100-step washout, integrated with 10 sub-steps per
  step, squashed with ``tanh(x - 1)`` and centred; half for training, half for testing.
  Here the series come from ``lmu.tasks.mackey_glass`` (fourth-order Runge-Kutta), each from
  its own constant history drawn in [1.1, 1.3] (the notebook draws a noisy history);
* LMU: four stacked LMU layers, each with order 4, theta 4, one memory dimension, and a
  49-unit tanh hidden cell connected to the memory, the input and itself, plus a linear
  readout (about 18k weights);
* LSTM: four stacked LSTM layers of 25 units plus a linear readout (about 18k weights).

Published test NRMSE (after the 2020 fix of the notebook): LMU 4.873%, LSTM 5.872%.  The
number of epochs and the batch size are this script's choices.

Examples::

    python examples/mackey_glass.py --backend torch --quick            # minutes
    python examples/mackey_glass.py --backend keras                    # the full setting
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import lmu
from lmu.tasks import mackey_glass

PUBLISHED = {"lmu": 4.873, "lstm": 5.872}  # test NRMSE, percent
HORIZON = 15

#: Each of the four LMU layers (lmu.LMUConfig fields).
LMU_LAYER: dict[str, Any] = {
    "memory_d": 1,
    "order": 4,
    "theta": 4.0,
    "hidden_cell": {"type": "simple_rnn", "units": 49, "activation": "tanh"},
    "hidden_to_memory": True,
    "memory_to_memory": True,
    "input_to_hidden": True,
    "return_sequences": True,
}
LAYERS = 4
LSTM_UNITS = 25

Log = Callable[[int, float, float], None]


def make_data(
    n_series: int, length: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train and test inputs and targets, each (n_series // 2, length, 1)."""
    rng = np.random.default_rng(seed)
    series = np.stack(
        [
            mackey_glass(length + HORIZON, tau=17.0, x0=float(x0), discard=100, substeps=10)
            for x0 in rng.uniform(1.1, 1.3, n_series)
        ]
    )
    series = np.tanh(series - 1.0)
    series -= series.mean()
    x = series[:, :-HORIZON, None].astype(np.float32)
    y = series[:, HORIZON:, None].astype(np.float32)
    half = n_series // 2
    return x[:half], y[:half], x[half:], y[half:]


def nrmse(prediction: np.ndarray, target: np.ndarray) -> float:
    """RMSE divided by the target's standard deviation."""
    return float(np.sqrt(np.mean((prediction - target) ** 2)) / np.std(target))


# -- PyTorch ----------------------------------------------------------------------------------


def run_torch(kind: str, data: tuple, args: argparse.Namespace, log: Log) -> tuple[int, Any]:
    """Train with the torch backend; returns the weight count and a predict function."""
    import torch
    from torch import nn

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if kind == "lmu":
        layers = nn.ModuleList(
            lmu.get_layer("LMU", backend="torch", input_d=1 if i == 0 else 49, **LMU_LAYER)
            for i in range(LAYERS)
        )
        head = nn.Linear(49, 1)

        def body(x: torch.Tensor) -> torch.Tensor:
            for layer in layers:
                x = layer(x)[0]
            return x

    else:
        layers = nn.ModuleList([nn.LSTM(1, LSTM_UNITS, num_layers=LAYERS, batch_first=True)])
        head = nn.Linear(LSTM_UNITS, 1)

        def body(x: torch.Tensor) -> torch.Tensor:
            return layers[0](x)[0]

    net = nn.ModuleList([layers, head])
    x_train, y_train, x_test, y_test = (torch.as_tensor(a) for a in data)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    for epoch in range(args.epochs):
        start = time.perf_counter()
        order = torch.as_tensor(rng.permutation(len(x_train)))
        total = 0.0
        for i in range(0, len(order), args.batch_size):
            idx = order[i : i + args.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(head(body(x_train[idx])), y_train[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        log(epoch, total / len(x_train), time.perf_counter() - start)

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return head(body(torch.as_tensor(x))).numpy()

    return sum(p.numel() for p in net.parameters()), predict


# -- Keras ------------------------------------------------------------------------------------


def run_keras(kind: str, data: tuple, args: argparse.Namespace, log: Log) -> tuple[int, Any]:
    """Train with the keras backend; returns the weight count and a predict function."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(args.seed)
    inputs = keras.Input(shape=(None, 1))
    x = inputs
    for _ in range(LAYERS):
        if kind == "lmu":
            x = lmu.get_layer("LMU", backend="keras", **LMU_LAYER)(x)
        else:
            x = keras.layers.LSTM(LSTM_UNITS, return_sequences=True)(x)
    net = keras.Model(inputs, keras.layers.Dense(1)(x))
    net.compile(optimizer=keras.optimizers.Adam(args.lr), loss="mse")
    x_train, y_train, x_test, y_test = data
    for epoch in range(args.epochs):
        start = time.perf_counter()
        history = net.fit(
            x_train, y_train, batch_size=args.batch_size, epochs=1, shuffle=True, verbose=0
        )
        log(epoch, float(history.history["loss"][-1]), time.perf_counter() - start)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(net.predict(x, batch_size=args.batch_size, verbose=0))

    return int(sum(math.prod(w.shape) for w in net.trainable_weights)), predict


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the example; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("torch", "keras"), default="torch")
    parser.add_argument("--model", choices=("lmu", "lstm", "both"), default="both")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="32 series of 1,000 steps and 50 epochs (minutes) instead of 128 x 5,000 and 100",
    )
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice; 1 is often fastest for these "
        "small models on a busy machine)",
    )
    args = parser.parse_args(argv)
    n_series, length, epochs, batch = (32, 1000, 50, 4) if args.quick else (128, 5000, 100, 16)
    args.epochs = epochs if args.epochs is None else args.epochs
    args.batch_size = batch if args.batch_size is None else args.batch_size
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(args, name)})")

    start = time.perf_counter()
    data = make_data(n_series, length, args.seed)
    print(
        f"Mackey-Glass (tau=17), {HORIZON} steps ahead: {len(data[0])} training and "
        f"{len(data[2])} test series of {length:,} steps (generated in "
        f"{time.perf_counter() - start:.1f} s); {args.epochs} epochs, batch {args.batch_size}, "
        f"backend {args.backend}"
    )
    run = run_torch if args.backend == "torch" else run_keras
    kinds = ("lmu", "lstm") if args.model == "both" else (args.model,)
    results = {}
    for kind in kinds:
        times: list[float] = []

        def log(
            epoch: int, loss: float, seconds: float, kind: str = kind, times: list = times
        ) -> None:
            times.append(seconds)
            if epoch == 0 or (epoch + 1) % max(1, args.epochs // 10) == 0:
                print(
                    f"  {kind} epoch {epoch + 1}/{args.epochs}  loss {loss:.3g}  {seconds:.1f} s",
                    flush=True,
                )

        n_weights, predict = run(kind, data, args, log)
        score = nrmse(predict(data[2]), data[3])
        results[kind] = (n_weights, score, float(np.median(times)))

    print()
    print(f"{'model':<6} {'weights':>8} {'test NRMSE':>11} {'published':>10} {'s/epoch':>8}")
    for kind, (n_weights, score, seconds) in results.items():
        print(
            f"{kind:<6} {n_weights:>8,} {100 * score:>10.3f}% {PUBLISHED[kind]:>9.3f}% "
            f"{seconds:>8.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
