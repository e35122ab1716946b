"""lmu.export_weights / lmu.import_weights with Keras layers: round trips, building, errors."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import lmu  # noqa: E402
import lmu.testing  # noqa: E402
from lmu import reference  # noqa: E402

HIDDEN = ["dense", "simple_rnn", "gru", "lstm"]


def _options(hidden: str, kind: str = "LMU") -> dict[str, Any]:
    recurrent = kind != "LMUFeedforward"
    opts: dict[str, Any] = dict(
        memory_d=2,
        order=5,
        theta=(7.5, 19.0),
        hidden_cell={"type": hidden, "units": 4},
        input_to_hidden=True,
        use_bias=True,
        trainable_theta=True,
        trainable_A=True,
        trainable_B=True,
        input_d=3,
    )
    if recurrent:
        opts.update(hidden_to_memory=True, memory_to_memory=True)
    if kind != "LMUCell":
        opts["return_sequences"] = True
    return opts


def _train(layer: Any, steps: int = 3) -> None:
    """A few Adam steps through model.fit, so that every weight moves."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 12, 3))
    inp = keras.Input((12, 3), dtype="float64")
    model = keras.Model(inp, layer(inp))
    y = rng.normal(size=(4, 12, model.output_shape[-1]))
    model.compile(keras.optimizers.Adam(0.003), "mse")
    model.fit(x, y, epochs=steps, batch_size=4, verbose=0)


def _check_round_trip(src: Any, kind: str) -> None:
    backend = lmu.get_backend("keras")
    exported = lmu.export_weights(src)
    assert exported["backend"] == "keras" and exported["kind"] == kind
    json.dumps(exported["config"])
    dst = lmu.get_layer(kind, backend="keras", dtype="float64", **exported["config"])
    assert not dst.built
    lmu.import_weights(dst, exported)  # builds it from input_d
    again = lmu.export_weights(dst)["weights"]
    assert set(again) == set(exported["weights"])
    for name, value in exported["weights"].items():
        np.testing.assert_array_equal(again[name], value, err_msg=name)
    x = np.random.default_rng(1).normal(size=(2, 9, 3))
    a, sa = backend.run(src, x)
    b, sb = backend.run(dst, x)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)
    for s, t in zip(sa, sb, strict=True):
        np.testing.assert_allclose(t, s, rtol=0, atol=1e-12)
    ref, _ = reference.run(lmu.LMUConfig(**exported["config"]), exported["weights"], x)
    np.testing.assert_allclose(a, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["LMU", "LMUFeedforward", "LMUCell"])
@pytest.mark.parametrize("hidden", HIDDEN)
def test_round_trip(hidden: str, kind: str) -> None:
    options = _options(hidden, kind)
    src = lmu.get_layer(kind, backend="keras", dtype="float64", **options)
    config = lmu.LMUConfig(**options)
    lmu.import_weights(src, lmu.testing.case_weights(config, 3, seed=5))
    _check_round_trip(src, kind)


def test_trained_round_trip() -> None:
    src = lmu.get_layer("LMU", backend="keras", dtype="float64", **_options("lstm"))
    src.build((None, None, 3))
    before = lmu.export_weights(src)["weights"]
    _train(src)
    after = lmu.export_weights(src)["weights"]
    for name, value in before.items():  # training moved every weight
        assert not np.allclose(after[name], value), name
    _check_round_trip(src, "LMU")


def test_gru_bias_layout() -> None:
    layer = lmu.get_layer("LMU", backend="keras", **_options("gru"))
    layer.build((None, None, 3))
    w = lmu.export_weights(layer)["weights"]
    assert w["hidden_bias"].shape == (2, 12)
    np.testing.assert_array_equal(
        w["hidden_bias"], keras.ops.convert_to_numpy(layer.hidden_cell.bias)
    )


def test_unbuilt_layer() -> None:
    options = {k: v for k, v in _options("lstm").items() if k != "input_d"}
    layer = lmu.get_layer("LMU", backend="keras", **options)
    with pytest.raises(ValueError, match="has no weights yet: build it or call it once"):
        lmu.export_weights(layer)
    with pytest.raises(ValueError, match="input size is unknown"):
        lmu.import_weights(layer, {})  # hidden_to_memory: the kernel's rows do not tell
    simple = lmu.get_layer("LMU", backend="keras", memory_d=1, order=3, theta=4.0)
    lmu.import_weights(simple, {"kernel": np.ones((5, 1))})  # built from the kernel's rows
    assert simple.built and lmu.export_weights(simple)["config"]["input_d"] == 5


def test_import_errors() -> None:
    layer = lmu.get_layer("LMU", backend="keras", **_options("lstm"))
    layer.build((None, None, 3))
    good = lmu.export_weights(layer)["weights"]
    with pytest.raises(ValueError, match=r"missing weight\(s\) \['hidden_bias'\]"):
        lmu.import_weights(layer, {k: v for k, v in good.items() if k != "hidden_bias"})
    bad = {**good, "kernel": np.zeros((3, 2))}
    with pytest.raises(ValueError, match=r"'kernel' must have shape \(7, 2\) \(got \(3, 2\)\)"):
        lmu.import_weights(layer, bad)
    with pytest.raises(ValueError, match="unexpected weight 'A' .*trainable_A=True"):
        other = lmu.get_layer("LMU", backend="keras", **{**_options("lstm"), "trainable_A": False})
        lmu.import_weights(other, good)
    with pytest.raises(ValueError, match="layer must be an lmu_keras"):
        lmu.import_weights(keras.layers.Dense(2), good, backend="keras")


def test_native_hidden_cell_is_not_portable() -> None:
    layer = lmu.get_layer(
        "LMU",
        backend="keras",
        memory_d=1,
        order=3,
        theta=4.0,
        input_d=2,
        hidden_cell=keras.layers.Dense(2),
    )
    layer.build((None, None, 2))
    with pytest.raises(lmu.NotSerializableError, match="neutral hidden_cell spec"):
        lmu.export_weights(layer)
    assert set(lmu.get_backend("keras").export_weights(layer)) == {"kernel"}
