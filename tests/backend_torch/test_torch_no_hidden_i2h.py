"""hidden_cell=None with input_to_hidden=True (keras-lmu's convention): the output is
``[m_t, x_t]`` and the only state is the memory, in every mode, against lmu.reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lmu_torch import LMU, LMUCell, LMUFeedforward  # noqa: E402
from lmu_torch_helpers import assert_close, assert_states_close, build, reference_run  # noqa: E402

import lmu  # noqa: E402

INPUT = 3
MD, ORDER = 2, 5
OPTS: dict[str, Any] = dict(memory_d=MD, order=ORDER, theta=(6.5, 11.0), input_to_hidden=True)
MODES = ["auto", "fft", "raw", "last_state", "recurrent"]


def _data(T: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(2, T, INPUT))


def _mode_cases() -> list[tuple[str, bool, bool]]:
    cases = []
    for mode in MODES:
        for seq in (False, True):
            if mode == "last_state" and seq:
                continue
            for m2m in (False, True):
                if m2m and mode in ("fft", "raw", "last_state"):
                    continue
                cases.append((mode, seq, m2m))
    return cases


@pytest.mark.parametrize("state", [False, True], ids=["zero", "state"])
@pytest.mark.parametrize(("mode", "seq", "m2m"), _mode_cases())
def test_every_mode_outputs_memory_and_input(mode: str, seq: bool, m2m: bool, state: bool) -> None:
    layer = build(
        LMU,
        INPUT,
        seed=3,
        conv_mode=mode,
        return_sequences=seq,
        memory_to_memory=m2m,
        use_bias=True,
        truncate_ir=None,
        **OPTS,
    )
    assert layer.output_size == MD * ORDER + INPUT
    assert layer.state_sizes == [MD * ORDER]
    T = 13
    x = _data(T)
    s0 = [np.random.default_rng(1).normal(size=(2, MD * ORDER))] if state else None
    expected, expected_states = reference_run(layer, x, s0)
    out, states = layer(torch.tensor(x), None if s0 is None else (torch.tensor(s0[0]),))
    want_mode = "recurrent" if m2m else ("last_state" if mode == "auto" and not seq else mode)
    if mode == "auto" and seq and not m2m:
        want_mode = "raw"
    assert layer.mode == want_mode
    assert out.shape == ((2, T, MD * ORDER + INPUT) if seq else (2, MD * ORDER + INPUT))
    assert_close(out, expected, what="output")
    assert len(states) == 1
    assert_states_close(states, expected_states)
    # the second part is the input itself, the first the final memory
    last = out[:, -1] if seq else out
    assert torch.equal(last[:, MD * ORDER :], torch.tensor(x[:, -1]))
    assert_close(last[:, : MD * ORDER], states[0].detach().numpy(), 0.0)


@pytest.mark.parametrize("mode", ["fft", "raw", "recurrent"])
def test_long_fft_and_raw(mode: str) -> None:
    layer = build(LMU, INPUT, conv_mode=mode, return_sequences=True, truncate_ir=None, **OPTS)
    x = _data(300, seed=2)
    expected, expected_states = reference_run(layer, x)
    out, states = layer(torch.tensor(x))
    assert_close(out, expected, 1e-9, "output")
    assert_states_close(states, expected_states, 1e-9)


@pytest.mark.parametrize("mode", ["fft", "raw", "recurrent", "last_state"])
def test_chunked_equals_whole(mode: str) -> None:
    seq = mode != "last_state"
    layer = build(LMU, INPUT, conv_mode=mode, return_sequences=seq, truncate_ir=None, **OPTS)
    x = torch.tensor(_data(20, seed=4))
    whole, whole_state = layer(x)
    state = None
    outs = []
    for lo, hi in ((0, 7), (7, 8), (8, 20)):
        o, state = layer(x[:, lo:hi], state)
        outs.append(o)
    assert len(state) == 1
    assert whole.shape[-1] == MD * ORDER + INPUT
    if seq:
        assert torch.equal(whole[..., MD * ORDER :], x)
        assert_close(torch.cat(outs, 1), whole.detach().numpy())
    else:
        assert_close(outs[-1], whole.detach().numpy())
    assert_states_close(state, [s.detach().numpy() for s in whole_state])


@pytest.mark.parametrize(
    ("mode", "seq"),
    [(m, s) for m in ("auto", "fft", "raw", "last_state") for s in (False, True)][:-1],
)
def test_feedforward(mode: str, seq: bool) -> None:
    ff = build(LMUFeedforward, INPUT, conv_mode=mode, return_sequences=seq, **OPTS)
    assert ff.output_size == MD * ORDER + INPUT
    x = _data(17, seed=5)
    expected, expected_states = reference_run(ff, x)
    assert_close(ff(torch.tensor(x)), expected)
    out, states = ff.forward_with_state(torch.tensor(x))
    assert_close(out, expected)
    assert_states_close(states, expected_states)


@pytest.mark.parametrize("m2m", [False, True])
def test_cell_steps(m2m: bool) -> None:
    cell = build(LMUCell, INPUT, memory_to_memory=m2m, use_bias=True, **OPTS)
    assert cell.output_size == MD * ORDER + INPUT
    x = _data(6, seed=6)
    expected, expected_states = lmu.reference.run(cell.config, cell.canonical_weights(), x)
    state = None
    for t in range(6):
        out, state = cell(torch.tensor(x[:, t]), state)
        assert out.shape == (2, MD * ORDER + INPUT)
        assert_close(out, expected[:, t], what=f"step {t}")
        assert len(state) == 1
    assert_states_close(state, expected_states)


def test_dropout_drops_the_memory_input_not_the_output_copy() -> None:
    layer = build(LMU, INPUT, conv_mode="fft", return_sequences=True, dropout=0.5, **OPTS)
    layer.train()
    x = torch.tensor(_data(9, seed=7))
    torch.manual_seed(0)
    out, states = layer(x)
    torch.manual_seed(0)
    mask, _ = layer.make_dropout_masks(2, torch.float64, x.device)
    assert mask is not None and bool((mask == 0).any())
    expected, expected_states = lmu.reference.run(
        layer.config, layer.canonical_weights(), x.numpy(), input_mask=mask.numpy()
    )
    assert_close(out, expected)
    assert_states_close(states, expected_states)
    assert torch.equal(out[..., MD * ORDER :], x)


def test_hidden_to_memory_without_hidden_cell_still_raises() -> None:
    with pytest.raises(ValueError, match=r"hidden_to_memory=True needs a hidden_cell"):
        LMU(INPUT, hidden_to_memory=True, **OPTS)
