"""Loading models saved with keras-lmu 0.9 into lmu_keras's layers.

keras-lmu registers its classes as ``"keras-lmu>LMU"``, ``"keras-lmu>LMUCell"`` and
``"keras-lmu>LMUFeedforward"``.  Two ways in:

* ``lmu_keras.load_keras_lmu_model(path)`` -- loads a keras-lmu ``.keras`` file as it is:
  it maps the class names and moves the LMU layer's weights from keras-lmu's nested layout
  (``lmu/layer/vars`` or ``lmu/layer/cell/vars``) to this package's (``lmu/vars``).
  :func:`convert_keras_lmu_model` writes the converted file instead.
* ``keras.saving.load_model(path, custom_objects=lmu_keras.custom_objects())`` -- enough for
  models using ``RNN(LMUCell)`` and ``LMUFeedforward``, whose weight layout is the same.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from typing import Any

__all__ = ["KERAS_LMU_NAMES", "convert_keras_lmu_model", "custom_objects", "load_keras_lmu_model"]

#: keras-lmu's registered names and the classes that replace them.
KERAS_LMU_NAMES: dict[str, str] = {
    "keras-lmu>LMU": "LMU",
    "keras-lmu>LMUCell": "LMUCell",
    "keras-lmu>LMUFeedforward": "LMUFeedforward",
}


def custom_objects() -> dict[str, Any]:
    """``custom_objects`` for ``keras.saving.load_model`` mapping keras-lmu's names here.

    Returns
    -------
    dict
        ``{"keras-lmu>LMU": LMU, ..., "LMU": LMU, ...}``.
    """
    from . import layers

    out: dict[str, Any] = {}
    for registered, name in KERAS_LMU_NAMES.items():
        out[registered] = getattr(layers, name)
        out[name] = getattr(layers, name)
    return out


def _convert_config(text: str) -> str:
    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("registered_name") in KERAS_LMU_NAMES:
                node["registered_name"] = "lmu>" + KERAS_LMU_NAMES[node["registered_name"]]
                node["module"] = "lmu_keras.layers"
            return {k: fix(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return json.dumps(fix(json.loads(text)))


def _convert_weights(src: str, dst: str) -> None:
    """Copy an h5 weights file, moving keras-lmu's nested LMU weights up one or two levels."""
    import h5py

    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:

        def copy(gin: Any, gout: Any) -> None:
            for key, value in gin.attrs.items():
                gout.attrs[key] = value
            inner = gin.get("layer")
            nested = None
            if isinstance(inner, h5py.Group) and ("cell" in inner or "delay_layer" in inner):
                nested = inner["cell"]["vars"] if "cell" in inner else inner["vars"]
            for key in gin:
                item = gin[key]
                if nested is not None and key == "layer":
                    continue
                if key == "delay_layer":
                    continue  # keras-lmu LMUFeedforward's weightless helper layer
                if isinstance(item, h5py.Dataset):
                    gin.copy(item, gout, name=key)
                elif nested is not None and key == "vars":
                    group = gout.create_group("vars")
                    for vkey in nested:
                        nested.copy(nested[vkey], group, name=vkey)
                else:
                    copy(item, gout.create_group(key))

        copy(fin, fout)


def convert_keras_lmu_model(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Write a copy of a keras-lmu ``.keras`` file that loads with lmu_keras's layers.

    Parameters
    ----------
    src : path
        A ``.keras`` file saved with keras-lmu 0.9 (Keras 3).
    dst : path
        Where to write the converted ``.keras`` file.

    Raises
    ------
    ValueError
        If ``src`` is not a ``.keras`` zip archive.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    if not zipfile.is_zipfile(src):
        raise ValueError(f"src must be a .keras file (a zip archive) (got {src!r})")
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(src) as zin:
        with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
            for info in zin.infolist():
                data = zin.read(info.filename)
                if info.filename == "config.json":
                    data = _convert_config(data.decode("utf-8")).encode("utf-8")
                elif info.filename.endswith(".weights.h5"):
                    a = os.path.join(tmp, "in.h5")
                    b = os.path.join(tmp, "out.h5")
                    with open(a, "wb") as f:
                        f.write(data)
                    _convert_weights(a, b)
                    with open(b, "rb") as f:
                        data = f.read()
                zout.writestr(info.filename, data)


def load_keras_lmu_model(filepath: str | os.PathLike[str], **kwargs: Any) -> Any:
    """Load a model saved with keras-lmu 0.9, with lmu_keras's layers in place of its own.

    Parameters
    ----------
    filepath : path
        The keras-lmu ``.keras`` file.
    **kwargs
        Passed to ``keras.saving.load_model`` (``compile``, ``safe_mode``,
        ``custom_objects`` -- merged with :func:`custom_objects`).

    Returns
    -------
    keras.Model
    """
    import keras

    objects = custom_objects()
    objects.update(kwargs.pop("custom_objects", None) or {})
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "converted.keras")
        convert_keras_lmu_model(filepath, path)
        return keras.saving.load_model(path, custom_objects=objects, **kwargs)
