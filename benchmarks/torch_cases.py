"""Benchmark cases A-F and streaming inference for the torch backend (used by benchmarks/run.py).

Each case builds a float32 model on fixed random data and returns one training step
(forward, MSE loss, backward, Adam) and the execution mode the LMU chose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lmu_torch import LMU, LMUCell
from torch import nn

__all__ = ["CASES", "IMPLS", "build", "build_stream"]

IMPLS = ("torch",)

_C_BASE: dict[str, Any] = dict(
    input_size=1,
    memory_d=1,
    order=256,
    theta=784,
    steps=784,
    batch=100,
    head=10,
    hidden_cell={"type": "dense", "units": 212, "activation": "tanh"},
)
CASES: dict[str, dict[str, Any]] = {
    "A": dict(input_size=32, memory_d=32, order=256, theta=784, steps=512, batch=16, head=2),
    "B": dict(
        input_size=32,
        memory_d=32,
        order=256,
        theta=784,
        steps=512,
        batch=16,
        head=2,
        return_sequences=True,
    ),
    "C": dict(_C_BASE),
    "D": dict(
        _C_BASE,
        hidden_cell={"type": "simple_rnn", "units": 212, "activation": "tanh"},
        input_to_hidden=True,
    ),
    "E": dict(
        _C_BASE,
        hidden_cell={"type": "simple_rnn", "units": 212, "activation": "tanh"},
        input_to_hidden=True,
        hidden_to_memory=True,
        memory_to_memory=True,
    ),
    "F": dict(_C_BASE, trainable_theta=True, discretizer="zoh"),
}


def _model(case: str, device: str) -> tuple[LMU, nn.Linear, dict[str, Any]]:
    if case not in CASES:
        raise ValueError(f"case must be one of {sorted(CASES)} (got {case!r})")
    spec = dict(CASES[case])
    steps, batch, head_size = spec.pop("steps"), spec.pop("batch"), spec.pop("head")
    input_size = spec.pop("input_size")
    torch.manual_seed(0)
    layer = LMU(input_size, **spec).to(device)
    head = nn.Linear(layer.output_size, head_size).to(device)
    return layer, head, dict(steps=steps, batch=batch, input_size=input_size, head=head_size)


def build(case: str, impl: str, device: str = "cpu") -> tuple[Callable[[], None], str]:
    """One training step of ``case`` and the LMU's execution mode.

    Parameters
    ----------
    case : {"A", "B", "C", "D", "E", "F"}
    impl : {"torch"}
    device : str
        "cpu" or "cuda".

    Returns
    -------
    train_step : callable
        Runs forward, MSE loss against fixed random targets, backward and an Adam step.
    mode : str
        The mode the LMU chose for the case's sequence length.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS} (got {impl!r})")
    layer, head, dims = _model(case, device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(dims["batch"], dims["steps"], dims["input_size"], generator=gen).to(device)
    seq = layer.config.return_sequences
    shape = (dims["batch"], dims["steps"], dims["head"]) if seq else (dims["batch"], dims["head"])
    y = torch.randn(*shape, generator=gen).to(device)
    # theta_inv is about 1/784: Adam's lr=1e-3 would make it negative within two steps, so it
    # gets a step size in proportion (keras-lmu has the same parameter and the same problem).
    theta = [p for n, p in layer.named_parameters() if n == "theta_inv"]
    others = [p for n, p in layer.named_parameters() if n != "theta_inv"]
    groups: list[dict[str, Any]] = [{"params": others + list(head.parameters())}]
    if theta:
        groups.append({"params": theta, "lr": 1e-6})
    opt = torch.optim.Adam(groups, lr=1e-3)
    loss_fn = nn.MSELoss()

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(head(layer(x)[0]), y)  # no local reference: the memory frees early
        loss.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return train_step, layer.choose_mode(dims["steps"])


def build_stream(impl: str) -> Callable[[], None]:
    """One streaming inference step (batch 1) of case D's model, state carried across calls."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS} (got {impl!r})")
    spec = CASES["D"]
    torch.manual_seed(0)
    cell = LMUCell(
        1,
        memory_d=1,
        order=256,
        theta=784,
        hidden_cell=spec["hidden_cell"],
        input_to_hidden=True,
    ).eval()
    head = nn.Linear(cell.output_size, 10).eval()
    x = torch.randn(1, 1)
    state: list[Any] = [None]

    @torch.inference_mode()
    def step() -> None:
        out, state[0] = cell(x, state[0])
        head(out)

    return step
