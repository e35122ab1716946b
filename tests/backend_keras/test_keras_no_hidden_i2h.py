"""hidden_cell=None with input_to_hidden=True (keras-lmu's convention): the output is
``[m_t, x_t]`` and the only state is the memory, in every mode, against lmu.reference; and
LMUFeedforward's dropout, which acts on the inputs before everything (as keras-lmu's)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from lmu_keras import LMU, LMUCell, LMUFeedforward  # noqa: E402
from lmu_keras_helpers import set_canonical  # noqa: E402

import lmu  # noqa: E402
from lmu.reference import random_weights, run  # noqa: E402

IN, MD, ORDER = 3, 2, 5
MEM = MD * ORDER
OUT = MEM + IN
BASE: dict[str, Any] = dict(memory_d=MD, order=ORDER, theta=(6.5, 11.0), input_to_hidden=True)


def _data(T: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(2, T, IN))


def _layer(cls: Any, cfg: lmu.LMUConfig, T: int | None, **extra: Any) -> tuple[Any, dict]:
    w = random_weights(cfg, IN, seed=4)
    layer = cls.from_lmu_config(cfg, dtype="float64", **extra)
    layer.build((2, T, IN))
    set_canonical(layer, w)
    return layer, w


def _mode_cases() -> list[tuple[str, bool, bool]]:
    out = []
    for mode in ("auto", "fft", "raw", "last_state", "recurrent"):
        for seq in (False, True):
            for m2m in (False, True):
                if (mode == "last_state" and seq) or (m2m and mode not in ("auto", "recurrent")):
                    continue
                out.append((mode, seq, m2m))
    return out


@pytest.mark.parametrize("state", [False, True], ids=["zero", "state"])
@pytest.mark.parametrize(("mode", "seq", "m2m"), _mode_cases())
def test_lmu_every_mode_matches_reference(mode, seq, m2m, state, float64):
    cfg = lmu.LMUConfig(
        **BASE,
        conv_mode=mode,
        return_sequences=seq,
        memory_to_memory=m2m,
        use_bias=True,
        truncate_ir=None,
    )
    T = 13
    layer, w = _layer(LMU, cfg, T, return_state=True)
    x = _data(T)
    s0 = [np.random.default_rng(1).normal(size=(2, MEM))] if state else None
    ref, ref_states = run(cfg, w, x, s0)
    out, *states = layer(x, initial_state=s0) if s0 is not None else layer(x)
    expected_mode = {"auto": "recurrent" if m2m else ("raw" if seq else "last_state")}
    assert layer.mode == expected_mode.get(mode, mode)
    expected = ref if seq else ref[:, -1]
    assert tuple(out.shape) == expected.shape == ((2, T, OUT) if seq else (2, OUT))
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-10)
    assert len(states) == 1
    np.testing.assert_allclose(np.asarray(states[0]), ref_states[0], atol=1e-10)
    last = np.asarray(out)[:, -1] if seq else np.asarray(out)
    np.testing.assert_array_equal(last[:, MEM:], x[:, -1])


@pytest.mark.parametrize(
    ("mode", "seq"), [("auto", False), ("auto", True), ("fft", True), ("raw", False),
                      ("last_state", False)]
)  # fmt: skip
def test_feedforward_matches_reference(mode, seq, float64):
    cfg = lmu.LMUConfig(**BASE, conv_mode=mode, return_sequences=seq, truncate_ir=None)
    layer, w = _layer(LMUFeedforward, cfg, 17, return_state=True)
    x = _data(17, seed=2)
    ref, ref_states = run(cfg, w, x)
    out, state = layer(x)
    np.testing.assert_allclose(np.asarray(out), ref if seq else ref[:, -1], atol=1e-10)
    np.testing.assert_allclose(np.asarray(state), ref_states[0], atol=1e-10)


@pytest.mark.parametrize("m2m", [False, True])
def test_cell_in_rnn_matches_reference(m2m, float64):
    cfg = lmu.LMUConfig(**BASE, memory_to_memory=m2m, use_bias=True, input_d=IN)
    w = random_weights(cfg, IN, seed=5)
    cell = LMUCell.from_lmu_config(cfg, dtype="float64")
    assert cell.output_size == OUT  # known before build through input_d (as in keras-lmu)
    assert cell.state_size == [MEM]
    rnn = keras.layers.RNN(cell, return_sequences=True, return_state=True, dtype="float64")
    x = _data(8, seed=3)
    rnn.build(x.shape)
    set_canonical(cell, w)
    ref, ref_states = run(cfg, w, x)
    out, state = rnn(x)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-10)
    np.testing.assert_allclose(np.asarray(state), ref_states[0], atol=1e-10)
    # one step by hand
    o, s = cell(x[:, 0], [np.zeros((2, MEM))])
    np.testing.assert_allclose(np.asarray(o), ref[:, 0], atol=1e-10)
    assert len(s) == 1


def test_cell_output_size_before_build_needs_input_d():
    cell = LMUCell(MD, ORDER, 5.0, None, input_to_hidden=True)
    with pytest.raises(ValueError, match=r"input_d=None") as info:
        _ = cell.output_size
    assert "hidden_cell=None and input_to_hidden=True" in str(info.value)
    # the RNN builds the cell first, so input_d is not needed there
    inp = keras.Input((7, IN))
    out = keras.layers.RNN(cell, return_sequences=True)(inp)
    assert tuple(out.shape) == (None, 7, OUT)
    assert cell.output_size == OUT


@pytest.mark.parametrize("cls", [LMU, LMUFeedforward])
@pytest.mark.parametrize("seq", [False, True])
def test_output_shapes(cls, seq):
    layer = cls(MD, ORDER, 5.0, None, input_to_hidden=True, return_sequences=seq)
    assert layer.compute_output_shape((4, 9, IN)) == ((4, 9, OUT) if seq else (4, OUT))
    stated = cls(MD, ORDER, 5.0, None, input_to_hidden=True, return_state=True)
    assert stated.compute_output_shape((4, 9, IN)) == ((4, OUT), (4, MEM))
    inp = keras.Input((9, IN))
    out = layer(inp)
    assert tuple(out.shape) == ((None, 9, OUT) if seq else (None, OUT))
    eager = layer(np.zeros((4, 9, IN), "float32"))
    assert tuple(eager.shape) == ((4, 9, OUT) if seq else (4, OUT))


@pytest.mark.parametrize("kind", ["LMU", "LMUFeedforward", "LMUCell"])
def test_config_round_trip(kind):
    x = _data(6, seed=8).astype("float32")
    if kind == "LMUCell":
        layer = keras.layers.RNN(
            LMUCell(MD, ORDER, 5.0, None, input_to_hidden=True, input_d=IN),
            return_sequences=True,
        )
    else:
        cls = {"LMU": LMU, "LMUFeedforward": LMUFeedforward}[kind]
        layer = cls(MD, ORDER, 5.0, None, input_to_hidden=True, return_sequences=True)
    out = np.asarray(layer(x))
    config = layer.get_config()
    inner = config["cell"]["config"] if kind == "LMUCell" else config
    assert inner["hidden_cell"] is None
    assert inner["input_to_hidden"] is True
    copy = type(layer).from_config(config)
    copy.build(x.shape)
    copy.set_weights(layer.get_weights())
    assert out.shape == (2, 6, OUT)
    np.testing.assert_allclose(np.asarray(copy(x)), out, atol=1e-6)


def test_keras_file_round_trip(tmp_path):
    inp = keras.Input((6, IN))
    model = keras.Model(inp, LMU(MD, ORDER, 5.0, None, input_to_hidden=True)(inp))
    x = _data(6, seed=9).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)


@pytest.mark.parametrize("mode", ["fft", "raw", "recurrent", "last_state"])
def test_chunked_equals_whole(mode, float64):
    seq = mode != "last_state"
    cfg = lmu.LMUConfig(**BASE, conv_mode=mode, return_sequences=seq, truncate_ir=None)
    x = _data(20, seed=10)
    layer, _ = _layer(LMU, cfg, None, return_state=True)
    whole, whole_state = layer(x)
    assert whole.shape[-1] == OUT
    state, outs = None, []
    for lo, hi in ((0, 7), (7, 8), (8, 20)):
        part = x[:, lo:hi]
        o, state = layer(part, initial_state=[state]) if state is not None else layer(part)
        outs.append(np.asarray(o))
    got = np.concatenate(outs, axis=1) if seq else outs[-1]
    np.testing.assert_allclose(got, np.asarray(whole), atol=1e-10)
    np.testing.assert_allclose(np.asarray(state), np.asarray(whole_state), atol=1e-10)


@pytest.mark.parametrize("mode", ["fft", "recurrent"])
@pytest.mark.parametrize("linear", [True, False], ids=["linear", "memory_to_memory"])
def test_lmu_dropout_on_the_output_copy_of_the_input(mode, linear, float64):
    # As keras-lmu's LMU: a linear memory drops the inputs before everything (its
    # LMUFeedforward), so [m_t, x_t] carries the dropped x_t, in every mode; otherwise (its
    # LMUCell) only the memory's input is dropped and x_t stays as given.
    if not linear and mode == "fft":
        pytest.skip("memory_to_memory has no fft mode")
    layer = LMU(
        MD, ORDER, 5.0, None, input_to_hidden=True, dropout=0.5, seed=1,
        memory_to_memory=not linear, return_sequences=True, conv_mode=mode, dtype="float64",
    )  # fmt: skip
    x = _data(9, seed=11)
    out = np.asarray(layer(x, training=True))
    if not linear:
        np.testing.assert_array_equal(out[..., MEM:], x)
        return
    ratio = out[..., MEM:] / x
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1], ratio.shape), atol=1e-12)
    assert set(np.round(np.unique(ratio), 12)) <= {0.0, 2.0}
    assert 0 < np.count_nonzero(ratio[:, 0]) < ratio[:, 0].size


def _fixed_mask(rate: float) -> np.ndarray:
    m = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])  # (batch, features)
    return m / (1.0 - rate)


def _patch_mask(monkeypatch, layer, rate):
    """Make the layer's dropout draws a known mask (reshaped to the shape asked for)."""
    mask = _fixed_mask(rate)

    def draw(like, rate):
        return keras.ops.reshape(keras.ops.convert_to_tensor(mask, like.dtype), like.shape)

    monkeypatch.setattr(layer, "_draw_dropout_mask", draw)
    return mask


@pytest.mark.parametrize("mode", ["fft", "raw", "last_state"])
@pytest.mark.parametrize("hidden", [None, "dense"])
def test_feedforward_dropout_reaches_the_hidden_cell(monkeypatch, mode, hidden, float64):
    # keras-lmu's LMUFeedforward applies Dropout to its inputs before everything: the memory
    # and (with input_to_hidden) the hidden cell see the same dropped input
    spec = None if hidden is None else {"type": "dense", "units": 4, "activation": "tanh"}
    cfg = lmu.LMUConfig(
        **{**BASE, "hidden_cell": spec},
        dropout=0.5,
        use_bias=True,
        conv_mode=mode,
        return_sequences=mode != "last_state",
        truncate_ir=None,
    )
    x = _data(12, seed=12)
    layer, w = _layer(LMUFeedforward, cfg, 12)
    mask = _patch_mask(monkeypatch, layer, 0.5)
    dropped = x * mask[:, None, :]
    ref, _ = run(cfg, w, dropped)  # no further mask: the inputs are dropped already
    expected = ref if cfg.return_sequences else ref[:, -1]
    np.testing.assert_allclose(np.asarray(layer(x, training=True)), expected, atol=1e-10)
    # at inference nothing is dropped
    plain = run(cfg, w, x)[0]
    np.testing.assert_allclose(
        np.asarray(layer(x, training=False)), plain if cfg.return_sequences else plain[:, -1],
        atol=1e-10,
    )  # fmt: skip


def test_feedforward_dropout_mask_fixed_over_time_per_feature(float64):
    layer = LMUFeedforward(
        MD, ORDER, 5.0, None, input_to_hidden=True, dropout=0.5, seed=3,
        return_sequences=True, dtype="float64",
    )  # fmt: skip
    x = np.ones((6, 10, IN))
    out = np.asarray(layer(x, training=True))
    kept = out[..., MEM:]
    assert set(np.unique(kept)) <= {0.0, 2.0}
    np.testing.assert_array_equal(kept, np.broadcast_to(kept[:, :1], kept.shape))
    assert 0 < np.count_nonzero(kept[:, 0]) < kept[:, 0].size
    np.testing.assert_array_equal(np.asarray(layer(x, training=False))[..., MEM:], x)


@pytest.mark.parametrize("cls", [LMU, LMUCell])
def test_hidden_to_memory_without_hidden_cell_still_raises(cls):
    with pytest.raises(ValueError, match=r"hidden_to_memory=True needs a hidden_cell"):
        cls(MD, ORDER, 5.0, None, hidden_to_memory=True, input_to_hidden=True, input_d=IN)
