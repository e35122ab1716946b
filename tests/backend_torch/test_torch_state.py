"""Feeding the returned state back continues a sequence exactly, in every mode."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lmu_torch import LMU  # noqa: E402
from lmu_torch_helpers import assert_close, assert_states_close, build, reference_run  # noqa: E402

CHUNKS = (1, 16, 33, 7)  # 57 steps


def _run_chunked(layer: Any, x: torch.Tensor) -> tuple[torch.Tensor | None, tuple[Any, ...]]:
    state = None
    outs = []
    start = 0
    for n in CHUNKS:
        out, state = layer(x[:, start : start + n], state)
        outs.append(out)
        start += n
    seq = torch.cat(outs, dim=1) if layer.config.return_sequences else outs[-1]
    return seq, state


@pytest.mark.parametrize(
    ("mode", "options"),
    [
        ("fft", {}),
        ("fft", {"hidden_cell": {"type": "lstm", "units": 3}, "input_to_hidden": True}),
        ("raw", {"hidden_cell": {"type": "dense", "units": 3, "activation": "relu"}}),
        ("raw", {"theta": (2.5, 9.0), "hidden_cell": {"type": "gru", "units": 3}}),
        ("last_state", {"hidden_cell": {"type": "dense", "units": 3}, "input_to_hidden": True}),
        ("last_state", {"theta": (2.5, 9.0)}),
        (
            "recurrent",
            {
                "hidden_cell": {"type": "simple_rnn", "units": 3},
                "hidden_to_memory": True,
                "memory_to_memory": True,
                "use_bias": True,
            },
        ),
        ("auto", {"hidden_cell": {"type": "gru", "units": 3}, "trainable_theta": True}),
        (
            "recurrent",
            {
                "memory_d": 1,
                "hidden_cell": {"type": "lstm", "units": 3},
                "hidden_to_memory": True,
                "memory_to_memory": True,
                "input_to_hidden": True,
            },
        ),
        ("fft", {"trainable_A": True, "trainable_B": True, "discretizer": "euler", "theta": 40.0}),
    ],
)
def test_chunked_equals_whole(mode: str, options: dict[str, Any]) -> None:
    opts = dict(memory_d=2, order=5, theta=6.5, conv_mode=mode, truncate_ir=None)
    opts.update(options)
    opts["return_sequences"] = mode != "last_state"
    layer = build(LMU, 2, **opts)
    x = torch.tensor(np.random.default_rng(0).normal(size=(3, sum(CHUNKS), 2)))
    whole, whole_state = layer(x)
    chunked, chunked_state = _run_chunked(layer, x)
    assert_close(chunked, whole.detach().numpy(), what="output")
    assert_states_close(chunked_state, [s.detach().numpy() for s in whole_state])
    expected, expected_states = reference_run(layer, x.numpy())
    assert_close(whole, expected, what="vs reference")
    assert_states_close(chunked_state, expected_states)


@pytest.mark.parametrize("mode", ["fft", "raw", "last_state"])
def test_initial_state_decays_through_free_response(mode: str) -> None:
    """A zero input with a non-zero initial memory gives m_t = Ad^(t+1) m0 exactly."""
    layer = build(
        LMU,
        1,
        memory_d=2,
        order=4,
        theta=(9.0, 15.5),
        conv_mode=mode,
        return_sequences=mode != "last_state",
        truncate_ir=None,
    )
    m0 = np.random.default_rng(1).normal(size=(2, 8))
    x = np.zeros((2, 12, 1))
    expected, expected_states = reference_run(layer, x, [m0])
    out, states = layer(torch.tensor(x), (torch.tensor(m0),))
    assert np.abs(expected).max() > 1e-3
    assert_close(out, expected)
    assert_states_close(states, expected_states)


def test_time_major_layout() -> None:
    layer = build(
        LMU,
        2,
        memory_d=1,
        order=3,
        theta=4.0,
        return_sequences=True,
        hidden_cell={"type": "gru", "units": 2},
        batch_first=False,
    )
    x = np.random.default_rng(2).normal(size=(2, 12, 2))
    expected, _ = reference_run(layer, x)
    out, _ = layer(torch.tensor(x).transpose(0, 1))
    assert out.shape == (12, 2, 2)
    assert_close(out.transpose(0, 1), expected)
