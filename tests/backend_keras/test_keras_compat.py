"""keras-lmu 0.9 behaviours: signatures, weights, theta, states, dropout, regularisers, dtype."""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from lmu_keras import LMU, LMUCell, LMUFeedforward  # noqa: E402

import lmu  # noqa: E402
from lmu.reference import random_weights, run  # noqa: E402

_COMMON = [
    ("trainable_theta", False),
    ("hidden_to_memory", False),
    ("memory_to_memory", False),
    ("input_to_hidden", False),
    ("discretizer", "zoh"),
    ("kernel_initializer", "glorot_uniform"),
    ("recurrent_initializer", "orthogonal"),
    ("kernel_regularizer", None),
    ("recurrent_regularizer", None),
    ("use_bias", False),
    ("bias_initializer", "zeros"),
    ("bias_regularizer", None),
    ("dropout", 0),
    ("recurrent_dropout", 0),
]
KERAS_LMU_SIGNATURES = {
    LMUCell: _COMMON + [("input_d", None), ("seed", None)],
    LMU: _COMMON + [("return_sequences", False)],
    LMUFeedforward: [
        ("input_to_hidden", False),
        ("discretizer", "zoh"),
        ("kernel_initializer", "glorot_uniform"),
        ("kernel_regularizer", None),
        ("use_bias", False),
        ("bias_initializer", "zeros"),
        ("bias_regularizer", None),
        ("dropout", 0),
        ("return_sequences", False),
        ("conv_mode", "fft"),
        ("truncate_ir", 1e-4),
    ],
}


@pytest.mark.parametrize("cls", list(KERAS_LMU_SIGNATURES))
def test_signature_is_keras_lmu(cls):
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert [p.name for p in positional[:4]] == ["memory_d", "order", "theta", "hidden_cell"]
    assert all(p.default is p.empty for p in positional[:4])
    expected = KERAS_LMU_SIGNATURES[cls]
    assert [(p.name, p.default) for p in positional[4:]] == expected


def test_signature_matches_installed_keras_lmu():
    keras_lmu = pytest.importorskip("keras_lmu")
    for cls in KERAS_LMU_SIGNATURES:
        theirs = inspect.signature(getattr(keras_lmu, cls.__name__).__init__).parameters
        ours = inspect.signature(cls.__init__).parameters
        for name, p in theirs.items():
            assert name in ours, name
            assert ours[name].default == p.default, name


def test_import_does_not_import_keras():
    code = "import sys, lmu, lmu_keras; lmu.list_backends(); print('keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_get_layer_builds_keras_layers():
    layer = lmu.get_layer(
        "LMU",
        backend="keras",
        memory_d=2,
        order=4,
        theta=5.0,
        hidden_cell={"type": "gru", "units": 3},
        return_sequences=True,
    )
    assert isinstance(layer, LMU)
    assert isinstance(layer.hidden_cell, keras.layers.GRUCell)
    cell = lmu.get_layer("LMUCell", backend="keras", memory_d=2, order=4, theta=5.0)
    assert isinstance(cell, LMUCell)
    ff = lmu.get_layer("LMUFeedforward", backend="keras", memory_d=2, order=4, theta=5.0)
    assert isinstance(ff, LMUFeedforward)
    out = layer(np.zeros((2, 7, 3), "float32"))
    assert tuple(out.shape) == (2, 7, 3)


def test_parallel_unless_recurrent_connections():
    x = np.zeros((2, 100, 3), "float32")
    for kwargs, expected in [
        ({}, "last_state"),
        ({"return_sequences": True}, "fft"),
        ({"trainable_theta": True}, "last_state"),
        ({"memory_to_memory": True}, "recurrent"),
        ({"hidden_to_memory": True}, "recurrent"),
    ]:
        layer = LMU(2, 4, 10.0, keras.layers.Dense(3), **kwargs)
        layer(x)
        assert layer.mode == expected, kwargs
    layer = LMU(2, 4, 10.0, keras.layers.SimpleRNNCell(3))
    layer(x)
    assert layer.mode == "fft"


def test_kernel_initializer_none_removes_kernel():
    layer = LMU(3, 4, 10.0, None, kernel_initializer=None)
    layer(np.zeros((1, 5, 3), "float32"))
    assert layer.kernel is None
    assert [w.name for w in layer.weights] == []
    with pytest.raises(ValueError, match="memory_d=2 features"):
        LMU(2, 4, 10.0, None, kernel_initializer=None)(np.zeros((1, 5, 3), "float32"))


def test_theta_property_is_trained_value():
    layer = LMU(2, 4, 10.0, None, trainable_theta=True)
    assert layer.theta == 10.0
    layer(np.zeros((1, 5, 3), "float32"))
    assert layer.theta == pytest.approx(10.0)
    layer.theta_inv.assign(0.25)
    assert layer.theta == pytest.approx(4.0)
    cell = LMUCell(2, 4, [10.0, 5.0], None, trainable_theta=True)
    keras.layers.RNN(cell)(np.zeros((1, 5, 3), "float32"))
    assert cell.theta == pytest.approx((10.0, 5.0))


def test_weight_names_shapes_and_order():
    layer = LMU(
        2,
        4,
        10.0,
        keras.layers.SimpleRNNCell(3),
        trainable_theta=True,
        use_bias=True,
        memory_to_memory=True,
        hidden_to_memory=True,
    )
    layer(np.zeros((1, 5, 6), "float32"))
    names = [(w.name, tuple(w.shape)) for w in layer.weights]
    assert names == [
        ("kernel", (8, 3)),
        ("recurrent_kernel", (3, 3)),
        ("bias", (3,)),  # hidden cell first
        ("kernel", (9, 2)),
        ("bias", (2,)),
        ("theta_inv", ()),
        ("recurrent_kernel", (8, 2)),
    ]
    cell = LMUCell(
        2,
        4,
        10.0,
        keras.layers.SimpleRNNCell(3),
        trainable_theta=True,
        use_bias=True,
        memory_to_memory=True,
    )
    keras.layers.RNN(cell)(np.zeros((1, 5, 6), "float32"))
    assert [w.name for w in cell.weights] == [
        "kernel",
        "bias",
        "theta_inv",
        "recurrent_kernel",
        "kernel",
        "recurrent_kernel",
        "bias",
    ]


def test_states_are_memory_then_hidden():
    layer = LMU(2, 4, 10.0, keras.layers.LSTMCell(3), return_state=True)
    out, *states = layer(np.ones((2, 5, 6), "float32"))
    assert [tuple(s.shape) for s in states] == [(2, 8), (2, 3), (2, 3)]
    np.testing.assert_allclose(np.asarray(out), np.asarray(states[1]))
    cell = LMUCell(2, 4, 10.0, keras.layers.LSTMCell(3))
    assert cell.state_size == [8, 3, 3]


def test_input_d_checked():
    cell = LMUCell(2, 4, 10.0, None, input_d=4)
    with pytest.raises(ValueError, match="input_d=4"):
        keras.layers.RNN(cell)(np.zeros((1, 5, 3), "float32"))


@pytest.mark.parametrize("where", ["fft", "recurrent", "cell"])
def test_dropout_mask_fixed_over_sequence_and_off_at_inference(where, float64):
    # no kernel: the memory input is the (masked) input itself, so each memory dimension's
    # response is either zero or twice the undropped one when the mask is fixed over time
    cfg = lmu.LMUConfig(
        memory_d=6, order=3, theta=5.0, kernel_initializer=None, return_sequences=True
    )
    x = np.ones((4, 9, 6))
    ref = run(cfg, {}, x)[0].reshape(4, 9, 6, 3)
    kw = dict(kernel_initializer=None, dropout=0.5, seed=3, dtype="float64")
    if where == "cell":
        layer = keras.layers.RNN(
            LMUCell(6, 3, 5.0, None, **kw), return_sequences=True, dtype="float64"
        )
    else:
        layer = LMU(6, 3, 5.0, None, return_sequences=True, conv_mode=where, **kw)
    np.testing.assert_allclose(
        np.asarray(layer(x, training=False)).reshape(ref.shape), ref, atol=1e-12
    )
    out = np.asarray(layer(x, training=True)).reshape(ref.shape)
    kept = 0
    for b in range(4):
        for d in range(6):
            got = out[b, :, d]
            if np.allclose(got, 0):
                continue
            np.testing.assert_allclose(got, 2.0 * ref[b, :, d], atol=1e-12)
            kept += 1
    assert 0 < kept < 24


def test_regularisers_add_expected_loss():
    layer = LMU(
        2,
        4,
        10.0,
        None,
        memory_to_memory=True,
        use_bias=True,
        bias_initializer="ones",
        kernel_regularizer=keras.regularizers.L2(0.1),
        recurrent_regularizer=keras.regularizers.L1(0.2),
        bias_regularizer=keras.regularizers.L2(0.3),
    )
    inp = keras.Input((5, 3))
    model = keras.Model(inp, layer(inp))
    k = np.asarray(layer.kernel)
    r = np.asarray(layer.recurrent_kernel)
    b = np.asarray(layer.bias)
    expected = 0.1 * np.sum(k**2) + 0.2 * np.sum(np.abs(r)) + 0.3 * np.sum(b**2)
    total = sum(float(np.asarray(v)) for v in model.losses)
    assert total == pytest.approx(expected, rel=1e-5)


def test_float64_end_to_end(float64):
    layer = LMU(2, 4, 10.0, keras.layers.GRUCell(3), trainable_theta=True, return_sequences=True)
    out = layer(np.ones((1, 5, 3)))
    assert keras.backend.standardize_dtype(out.dtype) == "float64"
    assert all(keras.backend.standardize_dtype(w.dtype) == "float64" for w in layer.weights)


def _keras_lmu_and_ours():
    """The keras_lmu and lmu_keras modules, where keras-lmu is installed and can run."""
    keras_lmu = pytest.importorskip("keras_lmu")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("keras-lmu runs on TensorFlow only")
    import lmu_keras

    return keras_lmu, lmu_keras


def _keras_lmu_pair(kind):
    keras_lmu, lmu_keras = _keras_lmu_and_ours()

    models = []
    for mod in (keras_lmu, lmu_keras):
        inp = keras.Input((20, 3), dtype="float64")
        hidden = keras.layers.SimpleRNNCell(4, dtype="float64")
        if kind == "cell":
            out = keras.layers.RNN(
                mod.LMUCell(
                    2,
                    5,
                    7.5,
                    hidden,
                    memory_to_memory=True,
                    hidden_to_memory=True,
                    use_bias=True,
                    trainable_theta=True,
                    dtype="float64",
                ),
                dtype="float64",
            )(inp)
        elif kind == "feedforward":
            out = mod.LMUFeedforward(
                2,
                5,
                7.5,
                keras.layers.Dense(4, dtype="float64"),
                use_bias=True,
                return_sequences=True,
                dtype="float64",
            )(inp)
        else:
            out = mod.LMU(
                2,
                5,
                7.5,
                hidden,
                input_to_hidden=True,
                use_bias=True,
                memory_to_memory=kind == "lmu-recurrent",
                dtype="float64",
            )(inp)
        models.append(keras.Model(inp, out))
    return models


@pytest.mark.parametrize("kind", ["cell", "feedforward", "lmu-parallel", "lmu-recurrent"])
def test_keras_lmu_weights_load(kind):
    theirs, ours = _keras_lmu_pair(kind)
    ours.set_weights(theirs.get_weights())
    x = np.random.default_rng(0).normal(size=(2, 20, 3))
    # keras-lmu's own feedforward path is accurate to ~1e-7 in float64; the others agree to 1e-12
    tol = 1e-6 if kind == "feedforward" else 1e-10
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), atol=tol)


def test_neutral_hidden_weights_use_keras_layouts(float64):
    cfg = lmu.LMUConfig(memory_d=1, order=3, theta=4.0, hidden_cell={"type": "gru", "units": 2})
    w = random_weights(cfg, 2)
    layer = LMU.from_lmu_config(cfg)
    layer(np.zeros((1, 3, 2)))
    assert tuple(layer.hidden_cell.bias.shape) == w["hidden_bias"].shape == (2, 6)
    assert tuple(layer.hidden_cell.kernel.shape) == w["hidden_kernel"].shape


def _keras_lmu_pair_no_hidden(kind):
    """keras-lmu's and our layer with hidden_cell=None and input_to_hidden=True."""
    keras_lmu, lmu_keras = _keras_lmu_and_ours()

    models = []
    for mod in (keras_lmu, lmu_keras):
        inp = keras.Input((20, 3), dtype="float64")
        common = dict(input_to_hidden=True, use_bias=True, dtype="float64")
        if kind == "cell":
            cell = mod.LMUCell(2, 5, 7.5, None, memory_to_memory=True, input_d=3, **common)
            out = keras.layers.RNN(cell, return_sequences=True, dtype="float64")(inp)
        elif kind == "feedforward":
            out = mod.LMUFeedforward(2, 5, 7.5, None, return_sequences=True, **common)(inp)
        else:
            out = mod.LMU(2, 5, 7.5, None, **common)(inp)
        models.append(keras.Model(inp, out))
    return models


# keras-lmu 0.9's LMU cannot run this config recurrently (memory_to_memory or trainable_theta):
# it does not pass input_d on to its LMUCell, which then raises; its LMUCell is compared instead
@pytest.mark.parametrize("kind", ["cell", "feedforward", "lmu-parallel"])
def test_keras_lmu_no_hidden_cell_input_to_hidden(kind):
    # keras-lmu: with hidden_cell=None and input_to_hidden=True the output is [m_t, x_t]
    theirs, ours = _keras_lmu_pair_no_hidden(kind)
    assert ours.output_shape == theirs.output_shape
    assert ours.output_shape[-1] == 2 * 5 + 3
    ours.set_weights(theirs.get_weights())
    x = np.random.default_rng(1).normal(size=(2, 20, 3))
    tol = 1e-10 if kind == "cell" else 1e-6  # keras-lmu's feedforward path: ~1e-7 in float64
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), atol=tol)


def test_feedforward_dropout_on_inputs_like_keras_lmu(float64):
    # keras-lmu's LMUFeedforward drops its inputs before everything (one mask per sequence and
    # feature), so the input copy in [m_t, x_t] is dropped too; ours does the same
    keras_lmu, lmu_keras = _keras_lmu_and_ours()

    cfg = lmu.LMUConfig(
        memory_d=3,
        order=4,
        theta=5.0,
        kernel_initializer=None,
        input_to_hidden=True,
        return_sequences=True,
    )
    x = np.random.default_rng(2).normal(size=(8, 10, 3)) + 3.0  # no zeros
    for mod in (keras_lmu, lmu_keras):
        layer = mod.LMUFeedforward(
            3, 4, 5.0, None, input_to_hidden=True, kernel_initializer=None, dropout=0.5,
            return_sequences=True, dtype="float64",
        )  # fmt: skip
        out = np.asarray(layer(x, training=True))
        mask = out[..., 12:] / x
        np.testing.assert_allclose(mask, np.broadcast_to(mask[:, :1], mask.shape), atol=1e-12)
        assert set(np.round(np.unique(mask), 12)) <= {0.0, 2.0}, mod.__name__
        assert 0 < np.count_nonzero(mask[:, 0]) < mask[:, 0].size, mod.__name__
        memory = run(cfg, {}, x * mask)[0][..., :12]
        np.testing.assert_allclose(out[..., :12], memory, atol=1e-6)


@pytest.mark.parametrize("linear", [True, False], ids=["linear-memory", "memory_to_memory"])
def test_lmu_dropout_like_keras_lmu_lmu(linear, float64):
    # keras-lmu's LMU runs its LMUFeedforward for a linear memory, which drops the inputs
    # before everything (the hidden cell sees the dropped x), and its LMUCell otherwise, which
    # drops only the memory's input [x, h]; ours follows the same split.  A linear hidden cell
    # with identity weights on x exposes what the hidden cell received.
    keras_lmu, lmu_keras = _keras_lmu_and_ours()

    keras.utils.set_random_seed(5)
    memory = 2 * 3
    x = np.random.default_rng(4).normal(size=(32, 6, 2)) + 3.0  # no zeros; 64 mask entries

    def seen(mod):
        hidden = keras.layers.Dense(memory + 2, use_bias=False, dtype="float64")
        layer = mod.LMU(
            2, 3, 4.0, hidden, input_to_hidden=True, memory_to_memory=not linear,
            dropout=0.5, return_sequences=True, dtype="float64",
        )  # fmt: skip
        layer(x[:1])
        hidden.set_weights([np.eye(memory + 2)])
        return np.asarray(layer(x, training=True))[..., memory:] / x  # the x part the cell got

    for mod in (keras_lmu, lmu_keras):
        ratio = seen(mod)
        if linear:  # the dropped input: 0 or 2, fixed over the sequence, some of each
            assert set(np.round(np.unique(ratio), 10)) <= {0.0, 2.0}, mod.__name__
            assert 0 < np.count_nonzero(ratio[:, 0]) < ratio[:, 0].size, mod.__name__
            np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1], ratio.shape))
        else:  # the raw input
            np.testing.assert_allclose(ratio, 1.0, atol=1e-12, err_msg=mod.__name__)
