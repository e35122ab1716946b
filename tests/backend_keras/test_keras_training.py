"""Training and the RNN-style features: fit, trainable theta/A/B, Bidirectional, stateful,
return_state, go_backwards, MirroredStrategy."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from lmu_keras import LMU, LMUCell, LMUFeedforward  # noqa: E402


def _delay_data(n=64, T=40, delay=5, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(n, T + 8))
    window = np.exp(-0.5 * (np.arange(-4, 5) / 2.0) ** 2)  # smooth (band-limited) input
    smooth = np.stack([np.convolve(r, window / window.sum() * 2.5, "valid") for r in noise])
    x = smooth[:, :T, None].astype("float32")
    y = np.zeros_like(x)
    y[:, delay:] = x[:, :-delay]
    return x, y


def test_fit_learns_delayed_copy():
    keras.utils.set_random_seed(0)
    x, y = _delay_data()
    model = keras.Sequential(
        [
            keras.Input((40, 1)),
            LMU(
                1,
                8,
                10.0,
                {"type": "dense", "units": 8, "activation": "linear"},
                return_sequences=True,
            ),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.Adam(0.03), "mse")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    last = model.evaluate(x, y, verbose=0)
    assert last < 0.1 * first, (first, last)


@pytest.mark.parametrize("trainable", ["theta", "AB"])
def test_trainable_system_changes_and_stays_parallel(trainable):
    keras.utils.set_random_seed(1)
    x, y = _delay_data(n=32, T=30)
    kw = (
        {"trainable_theta": True}
        if trainable == "theta"
        else {"trainable_A": True, "trainable_B": True}
    )
    layer = LMU(1, 6, 12.0, keras.layers.Dense(8), **kw)
    model = keras.Sequential([keras.Input((30, 1)), layer, keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.05), "mse")
    before = [np.asarray(v).copy() for v in layer.weights]
    model.fit(x, y[:, -1], epochs=3, batch_size=16, verbose=0)
    assert layer.mode == "last_state"
    name = "theta_inv" if trainable == "theta" else "A"
    idx = [w.name for w in layer.weights].index(name)
    assert not np.allclose(np.asarray(layer.weights[idx]), before[idx])
    assert np.all(np.isfinite(np.asarray(layer.weights[idx])))


def test_cell_in_rnn_trains():
    x, y = _delay_data(n=16, T=12)
    model = keras.Sequential(
        [
            keras.Input((12, 1)),
            keras.layers.RNN(
                LMUCell(
                    1,
                    4,
                    6.0,
                    keras.layers.SimpleRNNCell(5),
                    dropout=0.1,
                    hidden_to_memory=True,
                    trainable_theta=True,
                )
            ),
            keras.layers.Dense(1),
        ]
    )
    model.compile("adam", "mse")
    hist = model.fit(x, y[:, -1], epochs=2, verbose=0)
    assert np.isfinite(hist.history["loss"][-1])


def test_return_state_structure():
    layer = LMU(2, 3, 5.0, {"type": "lstm", "units": 4}, return_sequences=True, return_state=True)
    out = layer(np.ones((2, 6, 3), "float32"))
    assert [tuple(t.shape) for t in out] == [(2, 6, 4), (2, 6), (2, 4), (2, 4)]
    inp = keras.Input((6, 3))
    sym = layer(inp)
    assert [tuple(t.shape) for t in sym] == [(None, 6, 4), (None, 6), (None, 4), (None, 4)]


@pytest.mark.parametrize("mode", ["fft", "recurrent", "last_state"])
def test_go_backwards_reverses_time(mode):
    x = np.random.default_rng(2).normal(size=(2, 9, 3)).astype("float32")
    kw = dict(conv_mode=mode, return_sequences=mode != "last_state", seed=0)
    fwd = LMU(2, 3, 5.0, keras.layers.Dense(4), **kw)
    bwd = LMU(2, 3, 5.0, keras.layers.Dense(4), go_backwards=True, **kw)
    fwd(x)
    bwd(x)
    bwd.set_weights(fwd.get_weights())
    np.testing.assert_allclose(np.asarray(bwd(x)), np.asarray(fwd(x[:, ::-1])), atol=1e-5)


def test_bidirectional():
    x = np.random.default_rng(3).normal(size=(2, 9, 3)).astype("float32")
    inp = keras.Input((9, 3))
    bi = keras.layers.Bidirectional(
        LMU(2, 3, 5.0, {"type": "gru", "units": 4}, return_sequences=True)
    )
    model = keras.Model(inp, bi(inp))
    out = np.asarray(model(x))
    assert out.shape == (2, 9, 8)
    fwd = np.asarray(bi.forward_layer(x))
    bwd = np.asarray(bi.backward_layer(x))
    np.testing.assert_allclose(out[..., :4], fwd, atol=1e-6)
    np.testing.assert_allclose(out[..., 4:], bwd[:, ::-1], atol=1e-6)
    model.compile("adam", "mse")
    model.fit(x, np.zeros((2, 9, 8)), epochs=1, verbose=0)


def test_bidirectional_return_state_and_save(tmp_path):
    inp = keras.Input((9, 3))
    bi = keras.layers.Bidirectional(
        LMUFeedforward(2, 3, 5.0, keras.layers.Dense(4), return_state=True)
    )
    outs = bi(inp)
    model = keras.Model(inp, outs[0])
    path = tmp_path / "bi.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.ones((2, 9, 3), "float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)


@pytest.mark.parametrize("mode", ["fft", "recurrent"])
def test_stateful_continues_across_calls(mode):
    x = np.random.default_rng(4).normal(size=(2, 20, 3)).astype("float32")
    layer = LMU(
        2,
        4,
        6.0,
        keras.layers.SimpleRNNCell(3),
        return_sequences=True,
        stateful=True,
        conv_mode=mode,
    )
    inp = keras.Input((None, 3), batch_size=2)
    layer(inp)
    whole = np.asarray(layer(x))
    layer.reset_state()
    a = np.asarray(layer(x[:, :8]))
    b = np.asarray(layer(x[:, 8:]))
    np.testing.assert_allclose(np.concatenate([a, b], axis=1), whole, atol=1e-5)
    layer.reset_states()
    assert all(np.allclose(np.asarray(s.value), 0) for s in layer.states)


def test_stateful_needs_batch_size():
    with pytest.raises(ValueError, match="stateful=True needs a fixed batch size"):
        LMU(2, 4, 6.0, None, stateful=True)(keras.Input((5, 3)))


@pytest.mark.slow
def test_mirrored_strategy_two_cpus(tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.distribute needs the TensorFlow backend")
    script = textwrap.dedent(
        """
        import numpy as np, tensorflow as tf, keras
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from lmu_keras import LMU
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        with strategy.scope():
            model = keras.Sequential([
                keras.Input((20, 2)),
                LMU(2, 6, 8.0, {"type": "simple_rnn", "units": 8}, trainable_theta=True),
                keras.layers.Dense(1),
            ])
            model.compile(keras.optimizers.Adam(0.01), "mse")
        rng = np.random.default_rng(0)
        x = rng.normal(size=(32, 20, 2)).astype("float32")
        y = x[:, -5, :1]
        h = model.fit(x, y, epochs=4, batch_size=16, verbose=0).history["loss"]
        assert np.isfinite(h[-1]) and h[-1] < h[0], h
        print("OK", h[0], h[-1])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout
