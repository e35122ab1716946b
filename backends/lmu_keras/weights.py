"""The Keras backend's adapters for portable weights and the lmu.testing conformance kit.

The canonical layout *is* Keras' (keras-lmu's names; Keras' cells' gate orders ``i, f, c, o``
and ``z, r, h``; the GRU's ``(2, 3 * units)`` bias with ``reset_after=True``), so moving
weights is assigning variables after checking names and shapes against the core's canonical
set.  An unbuilt layer is built first from its ``input_d`` (or the kernel's rows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from lmu.config import LMUConfig
from lmu.weights import canonical_shapes, check_weights

from ._base import LMUBase
from .layers import LMUCell

__all__ = ["export_weights", "float64_kwargs", "import_weights", "layer_config", "run"]

_MEMORY = ("kernel", "recurrent_kernel", "bias", "theta_inv", "A", "B")


def _check_layer(layer: Any) -> LMUBase:
    if not isinstance(layer, LMUBase):
        raise ValueError(
            f"layer must be an lmu_keras LMU, LMUCell or LMUFeedforward (got "
            f"{type(layer).__name__})"
        )
    return layer


def _input_d(layer: LMUBase) -> int | None:
    return getattr(layer, "_built_input_d", None) or layer.config_.input_d


def _native_units(layer: LMUBase, input_d: int) -> int | None:
    if layer.config_.hidden_cell_type != "native":
        return None
    return layer.hidden_output_size(input_d)


def layer_config(layer: Any) -> LMUConfig:
    """The layer's config, with input_d from the built layer."""
    layer = _check_layer(layer)
    config = layer.config_
    input_d = _input_d(layer)
    if config.input_d is None and input_d is not None:
        config = config.replace(input_d=input_d)
    return config


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, keras.Variable):
        return np.asarray(value.numpy(), dtype=np.float64)  # np.array(variable) warns on TF
    return np.asarray(ops.convert_to_numpy(value), dtype=np.float64)


def export_weights(layer: Any) -> dict[str, np.ndarray]:
    """Canonical float64 weights of a built layer."""
    layer = _check_layer(layer)
    if not layer.built:
        raise ValueError(
            f"the Keras {type(layer).__name__} has no weights yet: build it or call it once "
            "before exporting its weights"
        )
    out: dict[str, np.ndarray] = {}
    for name in _MEMORY:
        var = getattr(layer, name, None)
        if var is not None:
            out[name] = _numpy(var)
    if layer.config_.hidden_cell_type not in (None, "native"):
        cell = layer.hidden_cell
        out["hidden_kernel"] = _numpy(cell.kernel)
        if getattr(cell, "recurrent_kernel", None) is not None:
            out["hidden_recurrent_kernel"] = _numpy(cell.recurrent_kernel)
        out["hidden_bias"] = _numpy(cell.bias)
    return out


def _build(layer: LMUBase, weights: Mapping[str, Any]) -> int:
    input_d = _input_d(layer)
    if input_d is None and "kernel" in weights and not layer.config_.hidden_to_memory:
        input_d = int(np.shape(weights["kernel"])[0])
    if input_d is None:
        raise ValueError(
            f"the Keras {type(layer).__name__} is not built and its input size is unknown: "
            "give input_d=... or build the layer before importing weights"
        )
    if not layer.built:
        if getattr(layer, "stateful", False):
            raise ValueError(
                "a stateful layer needs its batch size: build it (or call it once) before "
                "importing weights"
            )
        layer.build((None, input_d) if isinstance(layer, LMUCell) else (None, None, input_d))
    return int(input_d)


def import_weights(layer: Any, weights: Mapping[str, Any]) -> None:
    """Assign canonical weights, building the layer first if needed."""
    layer = _check_layer(layer)
    if not isinstance(weights, Mapping):
        raise ValueError(f"weights must be a mapping of names to arrays (got {weights!r})")
    input_d = _build(layer, weights)
    expected = canonical_shapes(layer.config_, input_d, _native_units(layer, input_d))
    where = f"the Keras {type(layer).__name__} (input_d={input_d})"
    arrays = check_weights(weights, expected, where)
    cell = layer.hidden_cell
    targets = {name: getattr(layer, name, None) for name in _MEMORY}
    if layer.config_.hidden_cell_type not in (None, "native"):
        targets["hidden_kernel"] = cell.kernel
        targets["hidden_recurrent_kernel"] = getattr(cell, "recurrent_kernel", None)
        targets["hidden_bias"] = cell.bias
    for name, value in arrays.items():
        var = targets.get(name)
        if var is None:  # pragma: no cover - canonical_shapes and the layer agree
            raise ValueError(f"the Keras {type(layer).__name__} has no weight {name!r}")
        var.assign(value.reshape(tuple(var.shape)).astype(var.dtype))


def run(
    layer: Any, x: np.ndarray, initial_state: Sequence[np.ndarray] | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Call the layer with training=False; NumPy in and out.

    An LMUCell is stepped over the time axis; a sequence layer is called with return_state
    switched on for the call.
    """
    layer = _check_layer(layer)
    dtype = layer.compute_dtype
    x = np.asarray(x).astype(dtype)
    states = None if initial_state is None else [np.asarray(s).astype(dtype) for s in initial_state]
    if isinstance(layer, LMUCell):
        if x.ndim != 3:
            raise ValueError(
                f"x must have shape (batch, time, features) to be stepped through an LMUCell "
                f"(got shape {x.shape})"
            )
        if x.shape[1] == 0:
            raise ValueError(f"x must have at least one time step (got shape {x.shape})")
        if not layer.built:
            layer.build(x.shape[::2])
        cur: list[Any] = list(states) if states is not None else layer.get_initial_state(x.shape[0])
        outs = []
        for t in range(x.shape[1]):
            out, cur = layer(x[:, t], cur, training=False)
            outs.append(_numpy(out))
        return np.stack(outs, axis=1), [_numpy(s) for s in cur]
    old = layer.return_state
    layer.return_state = True
    try:
        result = layer(x, initial_state=states, training=False)
    finally:
        layer.return_state = old
    return _numpy(result[0]), [_numpy(s) for s in result[1:]]


def float64_kwargs() -> dict[str, Any]:
    """``dtype="float64"`` (under JAX, set ``JAX_ENABLE_X64=1`` before JAX is imported)."""
    return {"dtype": "float64"}
