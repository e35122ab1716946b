"""Serialization: get_config, .keras round trips for every layer kind, keras-lmu migration."""

from __future__ import annotations

import inspect
import json
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from lmu_keras import LMU, LMUCell, LMUFeedforward  # noqa: E402
from lmu_keras.migrate import convert_keras_lmu_model, load_keras_lmu_model  # noqa: E402

X = np.random.default_rng(0).normal(size=(2, 12, 3)).astype("float32")


def _model(kind: str, **kw) -> keras.Model:
    inp = keras.Input((12, 3))
    if kind == "LMUCell":
        cell = LMUCell(
            2,
            5,
            7.5,
            keras.layers.SimpleRNNCell(4),
            memory_to_memory=True,
            hidden_to_memory=True,
            use_bias=True,
            trainable_theta=True,
            **kw,
        )
        out = keras.layers.RNN(cell)(inp)
    elif kind == "LMU-parallel":
        out = LMU(
            2, 5, 7.5, keras.layers.SimpleRNNCell(4), input_to_hidden=True, use_bias=True, **kw
        )(inp)
    elif kind == "LMU-recurrent":
        out = LMU(
            2,
            5,
            [7.5, 3.0],
            {"type": "gru", "units": 4},
            memory_to_memory=True,
            trainable_theta=True,
            kernel_regularizer=keras.regularizers.L2(0.01),
            **kw,
        )(inp)
    else:
        out = LMUFeedforward(
            2, 5, 7.5, keras.layers.Dense(4, activation="relu"), conv_mode="raw", **kw
        )(inp)
    return keras.Model(inp, keras.layers.Dense(1)(out))


KINDS = ["LMUCell", "LMU-parallel", "LMU-recurrent", "LMUFeedforward"]


@pytest.mark.parametrize("kind", KINDS)
def test_keras_file_round_trip(kind, tmp_path):
    model = _model(kind)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(X)), np.asarray(model(X)), atol=1e-6)
    assert [w.shape for w in loaded.weights] == [w.shape for w in model.weights]


@pytest.mark.parametrize("kind", KINDS)
def test_trained_model_round_trip_keeps_optimizer_state(kind, tmp_path):
    """A compiled, trained model saves and loads with its Adam state, then trains on."""
    model = _model(kind)
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    y = np.ones((2, 1), "float32")
    model.fit(X, y, epochs=2, verbose=0)
    path = tmp_path / "trained.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(X)), np.asarray(model(X)), atol=1e-6)
    saved = model.optimizer.variables
    restored = loaded.optimizer.variables
    assert int(loaded.optimizer.iterations) == 2
    assert len(restored) == len(saved) > 2
    for before, after in zip(saved, restored, strict=True):  # restored by position
        np.testing.assert_allclose(np.asarray(after), np.asarray(before), err_msg=before.path)
    loaded.fit(X, y, epochs=1, verbose=0)


@pytest.mark.parametrize("cls", [LMUCell, LMU, LMUFeedforward])
def test_get_config_holds_every_init_argument(cls):
    layer = cls(2, 5, 7.5, {"type": "lstm", "units": 3})
    config = layer.get_config()
    params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]
    assert set(params) <= set(config)
    again = cls.from_config(config)
    assert again.get_config() == config


def test_registered_names():
    for cls in (LMUCell, LMU, LMUFeedforward):
        assert keras.saving.get_registered_name(cls) == f"lmu>{cls.__name__}"


def test_hidden_cell_serialised():
    layer = LMU(2, 5, 7.5, keras.layers.LSTMCell(3, activation="relu"))
    config = layer.get_config()
    assert config["hidden_cell"]["class_name"] == "LSTMCell"
    again = LMU.from_config(json.loads(json.dumps(config)))
    assert isinstance(again.hidden_cell, keras.layers.LSTMCell)
    assert again.hidden_cell.activation is keras.activations.relu


# -- keras-lmu migration ----------------------------------------------------------------------
_OURS_ONLY = {
    "trainable_A",
    "trainable_B",
    "conv_mode",
    "truncate_ir",
    "return_state",
    "go_backwards",
    "stateful",
    "input_d",
    "seed",
}


def _to_keras_lmu_format(src, dst) -> None:
    """Rewrite a .keras file saved with lmu_keras into keras-lmu 0.9's format and layout."""
    import h5py

    with zipfile.ZipFile(src) as zin:
        config = json.loads(zin.read("config.json"))
        weights = zin.read("model.weights.h5")
        others = {
            n: zin.read(n) for n in zin.namelist() if n not in ("config.json", "model.weights.h5")
        }
    moves = {}

    def fix(node):
        if isinstance(node, dict):
            name = node.get("registered_name")
            if isinstance(name, str) and name.startswith("lmu>"):
                cls = name[4:]
                node["registered_name"] = f"keras-lmu>{cls}"
                node["module"] = "keras_lmu.layers"
                cfg = node["config"]
                keep = _OURS_ONLY - ({"input_d", "seed"} if cls == "LMUCell" else set())
                keep = keep - ({"conv_mode", "truncate_ir"} if cls == "LMUFeedforward" else set())
                for key in keep:
                    cfg.pop(key, None)
                if cls == "LMU":
                    parallel = not (
                        cfg["hidden_to_memory"] or cfg["memory_to_memory"] or cfg["trainable_theta"]
                    )
                    # h5 groups are named after the class (one LMU per test model)
                    moves["lmu"] = "layer" if parallel else "layer/cell"
            return {k: fix(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    config = fix(config)
    src_h5 = dst.parent / "ours.h5"
    dst_h5 = dst.parent / "theirs.h5"
    src_h5.write_bytes(weights)
    with h5py.File(src_h5, "r") as fin, h5py.File(dst_h5, "w") as fout:
        fin.copy(fin["layers"], fout, name="layers")
        fin.copy(fin["vars"], fout, name="vars")
        for name, where in moves.items():
            group = fout[f"layers/{name}"]
            target = group.create_group(where)
            if where == "layer":
                target.create_group("delay_layer/cell/vars")
                target.create_group("delay_layer/vars")
            else:
                group["layer"].create_group("vars")
            for key in group["vars"]:
                group.copy(group["vars"][key], target, name=f"vars/{key}")
            del group["vars"]
            group.create_group("vars")
    with zipfile.ZipFile(dst, "w") as zout:
        zout.writestr("config.json", json.dumps(config))
        zout.writestr("model.weights.h5", dst_h5.read_bytes())
        for n, data in others.items():
            zout.writestr(n, data)


@pytest.mark.parametrize("kind", KINDS)
def test_load_keras_lmu_file(kind, tmp_path):
    model = _model(kind)
    ours = tmp_path / "ours.keras"
    theirs = tmp_path / "theirs.keras"
    model.save(ours)
    _to_keras_lmu_format(ours, theirs)
    with zipfile.ZipFile(theirs) as z:
        assert "keras-lmu>" in z.read("config.json").decode()
    loaded = load_keras_lmu_model(theirs)
    np.testing.assert_allclose(np.asarray(loaded(X)), np.asarray(model(X)), atol=1e-6)
    converted = tmp_path / "converted.keras"
    convert_keras_lmu_model(theirs, converted)
    again = keras.saving.load_model(converted)
    np.testing.assert_allclose(np.asarray(again(X)), np.asarray(model(X)), atol=1e-6)


def test_convert_rejects_non_keras_file(tmp_path):
    bad = tmp_path / "x.keras"
    bad.write_text("not a zip")
    with pytest.raises(ValueError, match="src must be a .keras file"):
        convert_keras_lmu_model(bad, tmp_path / "y.keras")


def test_custom_objects_cover_keras_lmu_names():
    from lmu_keras import custom_objects

    objs = custom_objects()
    assert objs["keras-lmu>LMU"] is LMU
    assert objs["keras-lmu>LMUCell"] is LMUCell
    assert objs["keras-lmu>LMUFeedforward"] is LMUFeedforward


def test_real_keras_lmu_file(tmp_path):
    """With keras-lmu installed (TensorFlow only): its own saved file loads and agrees."""
    keras_lmu = pytest.importorskip("keras_lmu")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("keras-lmu runs on TensorFlow only")
    for parallel in (True, False):
        inp = keras.Input((12, 3))
        layer = keras_lmu.LMU(
            2,
            5,
            7.5,
            keras.layers.SimpleRNNCell(4),
            use_bias=True,
            memory_to_memory=not parallel,
            input_to_hidden=parallel,
        )
        model = keras.Model(inp, keras.layers.Dense(1)(layer(inp)))
        path = tmp_path / f"kl{parallel}.keras"
        model.save(path)
        loaded = load_keras_lmu_model(path)
        assert isinstance(loaded.layers[1], LMU)
        np.testing.assert_allclose(np.asarray(loaded(X)), np.asarray(model(X)), atol=1e-5)
