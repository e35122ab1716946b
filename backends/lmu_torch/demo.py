"""The PyTorch side of ``python -m lmu demo``: build, train and run a small LMU model.

Imported by :mod:`lmu.demo` only when the demo runs with ``--backend torch``; see that
module's docstring for the four functions every backend's demo module provides.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

import lmu
from lmu.config import LMUConfig

__all__ = ["DemoModel", "build_model", "count_params", "framework_version", "predict", "train"]


class DemoModel(nn.Module):
    """An LMU layer followed by a linear head (applied per step with return_sequences)."""

    def __init__(self, config: LMUConfig, input_d: int, output_d: int) -> None:
        super().__init__()
        fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        fields["input_d"] = input_d
        self.lmu = lmu.get_layer("LMU", backend="torch", **fields)
        self.head = nn.Linear(self.lmu.output_size, output_d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, input_d) -> (batch, [time,] output_d)."""
        out, _ = self.lmu(x)
        return self.head(out)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run on one intra-op thread, then restore the setting.

    The demo's models are tiny: splitting each small op over threads costs more than it
    gains, and on a busy machine several spinning threads slow training down many times over
    (measured: 2 ms per Adam step on one thread against 6-30 ms on two, on a shared 2-core
    machine).
    """
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def framework_version() -> str:
    """``"torch <version>"``."""
    return f"torch {torch.__version__}"


def build_model(
    config: LMUConfig, input_shape: Sequence[int], output_d: int, seed: int
) -> DemoModel:
    """The LMU of ``config`` plus a linear head, initialised from ``seed``.

    Parameters
    ----------
    config : LMUConfig
    input_shape : (steps, features)
    output_d : int
    seed : int

    Returns
    -------
    DemoModel
    """
    torch.manual_seed(seed)
    return DemoModel(config, int(input_shape[-1]), int(output_d))


def count_params(model: nn.Module) -> int:
    """The number of trainable weights."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    callback: Callable[[int, int, int, float], None] | None = None,
) -> None:
    """Adam on the mean squared error, mini-batches shuffled with ``seed``.

    Parameters
    ----------
    model : nn.Module
    x, y : ndarray
        Inputs and targets (first axis: samples).
    epochs, batch_size : int
    learning_rate : float
    seed : int
    callback : callable, optional
        ``callback(epoch, batch, n_batches, loss)`` after every batch.
    """
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.float32)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss_fn = nn.MSELoss()
    rng = np.random.default_rng(seed)
    n = len(xt)
    n_batches = -(-n // batch_size)
    model.train()
    with _one_thread():
        for epoch in range(epochs):
            order = torch.as_tensor(rng.permutation(n))
            for batch in range(n_batches):
                idx = order[batch * batch_size : (batch + 1) * batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(xt[idx]), yt[idx])
                loss.backward()
                optimizer.step()
                if callback is not None:
                    callback(epoch, batch, n_batches, float(loss.detach()))
    model.eval()


def predict(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The model's outputs for ``x``, as float64 NumPy."""
    model.eval()
    xt = torch.as_tensor(x, dtype=torch.float32)
    with torch.inference_mode(), _one_thread():
        outs = [model(xt[i : i + batch_size]) for i in range(0, len(xt), batch_size)]
    return torch.cat(outs).double().numpy()
