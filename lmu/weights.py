"""Portable weights: move a trained LMU between backends in the canonical names and layouts.

:func:`export_weights` asks the layer's backend for its weights in :mod:`lmu.reference`'s
canonical names and layouts (those of keras-lmu) and adds the layer's config;
:func:`import_weights` loads such a dict into a layer of any backend.  The backend adapters
(:meth:`lmu.Backend.export_weights` / :meth:`lmu.Backend.import_weights`) handle the layout
differences (torch's transposed kernels, gate orders and split biases); this module holds what
they share: the expected names and shapes for a config, and the checks with clear errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from . import reference
from ._registry import LAYER_KINDS, Backend, _registry, get_backend
from .config import INITIALIZERS, LMUConfig, NotSerializableError

__all__ = [
    "FORMAT",
    "canonical_shapes",
    "check_weights",
    "export_weights",
    "import_weights",
    "layer_backend",
]

#: The value of the "format" key of :func:`export_weights`' dict.
FORMAT = "lmu-weights-1"

#: What makes a layer have each canonical weight (for error messages).
_WHY: dict[str, str] = {
    "kernel": "kernel_initializer is not None",
    "recurrent_kernel": "memory_to_memory=True",
    "bias": "use_bias=True",
    "theta_inv": "trainable_theta=True",
    "A": "trainable_A=True",
    "B": "trainable_B=True",
    "hidden_kernel": "a neutral hidden_cell spec",
    "hidden_recurrent_kernel": "a simple_rnn, gru or lstm hidden_cell spec",
    "hidden_bias": "a neutral hidden_cell spec",
}
#: Config fields that change what the weights mean; they must agree on import.
_STRUCTURAL = (
    "memory_d",
    "order",
    "hidden_cell",
    "hidden_to_memory",
    "memory_to_memory",
    "input_to_hidden",
    "use_bias",
    "trainable_theta",
    "trainable_A",
    "trainable_B",
    "discretizer",
    "input_d",
)
_GATES = {"dense": 1, "simple_rnn": 1, "gru": 3, "lstm": 4}


def canonical_shapes(
    config: LMUConfig, input_d: int, native_units: int | None = None
) -> dict[str, tuple[int, ...]]:
    """The canonical weight names and shapes of a layer (see :mod:`lmu.reference`).

    ``theta_inv``, ``A`` and ``B`` are included only when trainable: otherwise the config's
    theta and the Legendre matrices define them.

    Parameters
    ----------
    config : LMUConfig
    input_d : int
        Input features.
    native_units : int, optional
        The output size of a framework-native hidden cell (its weights are not canonical and
        are left out); needed for ``kernel``'s rows with hidden_to_memory.

    Returns
    -------
    dict of str to tuple of int
    """
    md, order = config.memory_d, config.order
    kind = config.hidden_cell_type
    shapes: dict[str, tuple[int, ...]] = {}
    if config.kernel_initializer is not None:
        if kind == "native" and config.hidden_to_memory and native_units is None:
            raise ValueError(
                "native_units (the native hidden cell's output size) is needed for the kernel's "
                "shape with hidden_to_memory=True (got None)"
            )
        rows = reference.memory_input_size(config, input_d, native_units)
        shapes["kernel"] = (rows, md)
    if config.memory_to_memory:
        shapes["recurrent_kernel"] = (md * order, md)
    if config.use_bias:
        shapes["bias"] = (md,)
    if config.trainable_theta:
        shapes["theta_inv"] = (md,) if config.per_dim_theta else ()
    if config.trainable_A:
        shapes["A"] = (order, order)
    if config.trainable_B:
        shapes["B"] = (order, 1)
    if kind not in (None, "native"):
        units = int(config.hidden_cell["units"])
        gates = _GATES[str(kind)]
        shapes["hidden_kernel"] = (reference.hidden_input_size(config, input_d), units * gates)
        if kind != "dense":
            shapes["hidden_recurrent_kernel"] = (units, units * gates)
        shapes["hidden_bias"] = (2, 3 * units) if kind == "gru" else (units * gates,)
    return shapes


def check_weights(
    weights: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], where: str = "layer"
) -> dict[str, np.ndarray]:
    """Check a weight dict against the expected names and shapes; return float64 arrays.

    Parameters
    ----------
    weights : mapping of str to array-like
    expected : mapping of str to shape
        From :func:`canonical_shapes`.
    where : str
        What the weights are for, for the messages (e.g. "torch LMU").

    Returns
    -------
    dict of str to ndarray (float64, in ``expected``'s order)

    Raises
    ------
    ValueError
        Naming every missing or unexpected key (with the option that would make the layer
        have it) and every shape mismatch (expected and got), or a non-finite value.
    """
    if not isinstance(weights, Mapping):
        raise ValueError(f"weights must be a mapping of names to arrays (got {weights!r})")
    problems = []
    missing = [k for k in expected if k not in weights]
    extra = sorted(str(k) for k in weights if k not in expected)
    if missing:
        problems.append(f"missing weight(s) {missing} (expected exactly {list(expected)})")
    for name in extra:
        why = _WHY.get(name)
        hint = f" (a layer has it only with {why})" if why else " (not a canonical weight name)"
        problems.append(f"unexpected weight {name!r}{hint}")
    out: dict[str, np.ndarray] = {}
    for name, shape in expected.items():
        if name not in weights:
            continue
        try:
            arr = np.asarray(weights[name], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            problems.append(f"weight {name!r} is not a numeric array ({exc})")
            continue
        if arr.shape != tuple(shape):
            problems.append(f"weight {name!r} must have shape {tuple(shape)} (got {arr.shape})")
        elif not np.all(np.isfinite(arr)):
            problems.append(f"weight {name!r} has non-finite values")
        out[name] = arr
    if problems:
        raise ValueError(f"the weights do not fit {where}: " + "; ".join(problems))
    return out


def layer_backend(layer: Any, backend: str | Backend | None = None) -> Backend:
    """The backend a layer belongs to.

    Parameters
    ----------
    layer : a backend's layer
    backend : str or Backend, optional
        Explicit choice; otherwise the registered backend whose :meth:`Backend.owns` accepts
        the layer (by default: the layer's top-level package is the plugin's).

    Raises
    ------
    ValueError
        When no registered backend owns the layer.
    """
    if isinstance(backend, Backend):
        return backend
    if backend is not None:
        return get_backend(backend)
    for entry in _registry().values():
        if entry.backend is not None and entry.backend.owns(layer):
            return entry.backend
    raise ValueError(
        f"no registered lmu backend owns layers of type {type(layer).__module__}."
        f"{type(layer).__qualname__}; pass backend=... (registered: {sorted(_registry())})"
    )


def _kind(layer: Any) -> str | None:
    for cls in type(layer).__mro__:
        if cls.__name__ in LAYER_KINDS:
            return cls.__name__
    return None


def _config_dict(config: LMUConfig) -> dict[str, Any]:
    """``config.to_dict()``, with unserialisable initializers replaced by their defaults
    (the exported weights replace whatever they drew)."""
    changes: dict[str, Any] = {}
    for name in ("kernel_initializer", "recurrent_initializer", "bias_initializer"):
        value = getattr(config, name)
        if value is not None and not isinstance(value, (str, Mapping)):
            changes[name] = LMUConfig.__dataclass_fields__[name].default
            if changes[name] not in INITIALIZERS:  # pragma: no cover - defaults are names
                raise NotSerializableError(f"{name}={value!r} cannot be exported")
    if config.hidden_cell_type == "native":
        raise NotSerializableError(
            "portable weights need a neutral hidden_cell spec such as "
            "{'type': 'lstm', 'units': 16} (got a framework-native hidden cell, "
            f"{type(config.hidden_cell).__name__}, whose weights have no canonical layout)"
        )
    return (config.replace(**changes) if changes else config).to_dict()


def export_weights(layer: Any, backend: str | Backend | None = None) -> dict[str, Any]:
    """A layer's weights in the canonical names and layouts, with its config.

    Parameters
    ----------
    layer : LMU, LMUCell or LMUFeedforward of any backend
    backend : str or Backend, optional
        The layer's backend (found from the layer's type by default).

    Returns
    -------
    dict
        ``{"format": "lmu-weights-1", "backend": name, "kind": "LMU" | ..., "config":
        LMUConfig.to_dict() (with input_d), "weights": {name: float64 ndarray}}``.
        ``lmu.get_layer(d["kind"], backend=other, **d["config"])`` builds the same layer in
        another backend, and :func:`import_weights` loads the weights into it.

    Raises
    ------
    NotSerializableError
        For a framework-native hidden cell (its weights have no canonical layout).
    ValueError
        When the layer has no weights yet (an unbuilt Keras layer) or no backend owns it.
    """
    impl = layer_backend(layer, backend)
    config = impl.layer_config(layer)
    config_dict = _config_dict(config)
    weights = impl.export_weights(layer)
    if config.input_d is None:  # pragma: no cover - backends fill input_d in
        raise ValueError(f"backend {impl.name!r} did not report the layer's input_d")
    expected = canonical_shapes(config, config.input_d)
    where = f"the layer's config (a bug in backend {impl.name!r}'s export_weights)"
    weights = check_weights(weights, expected, where)
    return {
        "format": FORMAT,
        "backend": impl.name,
        "kind": _kind(layer),
        "config": config_dict,
        "weights": weights,
    }


def _check_config(exported: Mapping[str, Any], config: LMUConfig) -> None:
    other = LMUConfig.from_dict(exported)
    diffs = []
    for name in _STRUCTURAL:
        a, b = getattr(other, name), getattr(config, name)
        if name == "input_d" and (a is None or b is None):
            continue
        if a != b:
            diffs.append(f"{name}={a!r} in the weights, {b!r} in the layer")
    if (other.kernel_initializer is None) != (config.kernel_initializer is None):
        diffs.append("one has an input kernel and the other not (kernel_initializer=None)")
    if not config.trainable_theta and not np.allclose(other.thetas, config.thetas, rtol=1e-12):
        diffs.append(f"theta={other.theta!r} in the weights, {config.theta!r} in the layer")
    if diffs:
        raise ValueError("the exported config does not match the layer: " + "; ".join(diffs))


def import_weights(
    layer: Any, weights: Mapping[str, Any], backend: str | Backend | None = None
) -> None:
    """Load canonical weights into a layer of any backend.

    Parameters
    ----------
    layer : LMU, LMUCell or LMUFeedforward of any backend
    weights : dict
        :func:`export_weights`' output (its config is checked against the layer's), or a
        plain mapping of canonical names to arrays (e.g. ``lmu.reference.random_weights``).
    backend : str or Backend, optional
        The layer's backend (found from the layer's type by default).

    Raises
    ------
    ValueError
        When the exported config disagrees with the layer's on a field that changes what the
        weights mean (naming the field and both values), or for a missing or unexpected
        weight or a wrong shape (naming it, with the expected and the given shape).
    """
    impl = layer_backend(layer, backend)
    if not isinstance(weights, Mapping):
        raise ValueError(f"weights must be a mapping (got {type(weights).__name__})")
    if "weights" in weights and isinstance(weights["weights"], Mapping):
        fmt = weights.get("format", FORMAT)
        if fmt != FORMAT:
            raise ValueError(f"weights has format {fmt!r}; this lmu reads {FORMAT!r}")
        if weights.get("config") is not None:
            _check_config(weights["config"], impl.layer_config(layer))
        weights = weights["weights"]
    impl.import_weights(layer, weights)
