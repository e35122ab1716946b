"""The Keras side of ``python -m lmu demo``: build, train and run a small LMU model.

Imported by :mod:`lmu.demo` only when the demo runs with ``--backend keras``; see that
module's docstring for the four functions every backend's demo module provides.  Uses the
Keras API only, so it runs on whichever Keras backend is configured (``KERAS_BACKEND``).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no CUDA probing errors on CPU machines

import dataclasses  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

import lmu  # noqa: E402
from lmu.config import LMUConfig  # noqa: E402

__all__ = ["build_model", "count_params", "framework_version", "predict", "train"]


def framework_version() -> str:
    """``"keras <version> on <backend> <version>"``."""
    backend = keras.backend.backend()
    try:
        import importlib.metadata

        dist = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend, backend)
        version = " " + importlib.metadata.version(dist)
    except Exception:  # the framework under Keras may be installed under another name
        version = ""
    return f"keras {keras.__version__} on {backend}{version}"


def build_model(
    config: LMUConfig, input_shape: Sequence[int], output_d: int, seed: int
) -> keras.Model:
    """The LMU of ``config`` plus a Dense head, initialised from ``seed``.

    Parameters
    ----------
    config : LMUConfig
    input_shape : (steps, features)
    output_d : int
    seed : int

    Returns
    -------
    keras.Model
    """
    keras.utils.set_random_seed(seed)
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    fields["input_d"] = int(input_shape[-1])
    inputs = keras.Input(shape=tuple(int(s) for s in input_shape))
    memory = lmu.get_layer("LMU", backend="keras", **fields)(inputs)
    outputs = keras.layers.Dense(int(output_d))(memory)
    return keras.Model(inputs, outputs)


def count_params(model: keras.Model) -> int:
    """The number of trainable weights."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


class _Progress(keras.callbacks.Callback):
    def __init__(self, callback: Callable[[int, int, int, float], None], n_batches: int) -> None:
        super().__init__()
        self.callback = callback
        self.n_batches = n_batches
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = float((logs or {}).get("loss", float("nan")))
        self.callback(self.epoch, batch, self.n_batches, loss)


def train(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    callback: Callable[[int, int, int, float], None] | None = None,
) -> None:
    """Adam on the mean squared error with ``model.fit``, shuffled with ``seed``.

    Parameters
    ----------
    model : keras.Model
    x, y : ndarray
        Inputs and targets (first axis: samples).
    epochs, batch_size : int
    learning_rate : float
    seed : int
    callback : callable, optional
        ``callback(epoch, batch, n_batches, loss)`` after every batch; the loss is Keras'
        running mean over the epoch so far.
    """
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    n_batches = -(-len(x) // batch_size)
    callbacks = [_Progress(callback, n_batches)] if callback is not None else []
    model.fit(
        np.asarray(x, dtype="float32"),
        np.asarray(y, dtype="float32"),
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The model's outputs for ``x``, as float64 NumPy."""
    out = model.predict(np.asarray(x, dtype="float32"), batch_size=batch_size, verbose=0)
    return np.asarray(out, dtype=np.float64)
