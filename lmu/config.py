"""LMUConfig: the layer options every backend shares, validated in one place."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any

from .system import DISCRETIZERS

__all__ = [
    "ACTIVATIONS",
    "CONV_MODES",
    "HIDDEN_CELL_TYPES",
    "INITIALIZERS",
    "LMUConfig",
    "NotSerializableError",
    "hidden_cell_spec",
    "select_mode",
]

#: Values of ``conv_mode``.  "auto" picks one of the others (see :func:`select_mode`).
CONV_MODES: tuple[str, ...] = ("auto", "fft", "raw", "last_state", "recurrent")
#: Modes that need a linear time-invariant memory (no hidden_to_memory / memory_to_memory).
LTI_MODES: tuple[str, ...] = ("fft", "raw", "last_state")
#: Kinds of neutral hidden-cell spec, and whether each carries its own recurrent state.
HIDDEN_CELL_TYPES: dict[str, bool] = {"dense": False, "simple_rnn": True, "gru": True, "lstm": True}
#: Activation names a neutral hidden-cell spec may use (every backend implements each).
ACTIVATIONS: tuple[str, ...] = ("linear", "tanh", "relu", "sigmoid", "elu", "softplus", "swish")
#: Initializer names (Keras style) every backend implements; callables and framework
#: initializer objects are passed through to the backend.
INITIALIZERS: tuple[str, ...] = (
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "orthogonal",
    "zeros",
    "ones",
    "random_uniform",
    "random_normal",
    "truncated_normal",
)
_INIT_ALIASES = {name.replace("_", ""): name for name in INITIALIZERS}
_INIT_ALIASES.update({"uniform": "random_uniform", "normal": "random_normal", "zero": "zeros"})


class NotSerializableError(TypeError):
    """A config field holds a framework object the core cannot write to a dict or JSON."""


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _positive_int(name: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int (got {value!r})")
    return int(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        try:
            import numpy as np

            if isinstance(value, np.bool_):
                return bool(value)
        except ImportError:  # pragma: no cover - numpy is a dependency
            pass
        raise ValueError(f"{name} must be True or False (got {value!r})")
    return value


def _rate(name: str, value: Any) -> float:
    if not _is_real(value) or not (0 <= value < 1):
        raise ValueError(f"{name} must be a number in [0, 1) (got {value!r})")
    return float(value)


def normalize_initializer(name: str, value: Any, allow_none: bool = False) -> Any:
    """Validate an initializer: a known name (normalised), a callable/object, or a dict.

    Parameters
    ----------
    name : str
        The field name, for messages.
    value : str, callable, dict or None
        Strings are matched case- and underscore-insensitively against :data:`INITIALIZERS`
        (``"GlorotUniform"`` becomes ``"glorot_uniform"``).
    allow_none : bool
        Whether None is allowed (``kernel_initializer=None`` removes the input kernel).

    Returns
    -------
    The normalised name, or the value itself.

    Raises
    ------
    ValueError
        For an unknown name, None where it is not allowed, or a value that is neither a
        string, a callable nor a dict.
    """
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{name} must be an initializer name or object (got None)")
    if isinstance(value, str):
        key = value.lower().replace("_", "")
        if key not in _INIT_ALIASES:
            raise ValueError(
                f"{name} must be one of {INITIALIZERS}, a callable or an initializer object "
                f"(got {value!r})"
            )
        return _INIT_ALIASES[key]
    if isinstance(value, Mapping) or callable(value):
        return value  # callable, framework initializer object or serialised dict: the backend's
    raise ValueError(
        f"{name} must be one of {INITIALIZERS}, a callable or an initializer object (got {value!r})"
    )


def hidden_cell_spec(value: Any) -> dict[str, Any] | None:
    """Validate a neutral hidden-cell spec and fill in its defaults.

    Parameters
    ----------
    value : dict
        ``{"type": "dense" | "simple_rnn" | "gru" | "lstm", "units": int,
        "activation": str}``; activation defaults to "tanh".

    Returns
    -------
    dict
        A new dict with exactly the keys type, units, activation.

    Raises
    ------
    ValueError
        For a missing or unknown key or value.
    """
    if not isinstance(value, Mapping):
        raise ValueError(f"hidden_cell spec must be a dict (got {value!r})")
    unknown = set(value) - {"type", "units", "activation"}
    if unknown:
        raise ValueError(
            f"hidden_cell spec has unknown keys {sorted(unknown)}; allowed: type, units, activation"
        )
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in HIDDEN_CELL_TYPES:
        raise ValueError(
            f"hidden_cell['type'] must be one of {tuple(HIDDEN_CELL_TYPES)} (got {kind!r})"
        )
    units = _positive_int("hidden_cell['units']", value.get("units"))
    activation = value.get("activation", "tanh")
    if activation is None:
        activation = "linear"
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(
            f"hidden_cell['activation'] must be one of {ACTIVATIONS} (got {activation!r})"
        )
    return {"type": kind, "units": units, "activation": activation}


@dataclasses.dataclass(frozen=True)
class LMUConfig:
    """Every option the LMU layers share, validated on construction.

    Parameters
    ----------
    memory_d : int
        Number of memory dimensions (each a Legendre memory of ``order`` coefficients).
    order : int
        Legendre order.
    theta : float or tuple of float
        Window length in steps, > 0 and finite; a sequence gives one per memory dimension.
    hidden_cell : None, dict or framework layer
        None (the output is the memory ``m_t``, or ``[m_t, x_t]`` with input_to_hidden), a
        neutral spec (see :func:`hidden_cell_spec`) or a framework-native layer/module, passed
        through to the backend.
    trainable_theta : bool
        Learn theta (stored as ``theta_inv``, 1/theta).
    trainable_A, trainable_B : bool
        Fine-tune the continuous A and B matrices by backpropagation (re-discretised per call).
    hidden_to_memory : bool
        Feed the previous hidden output into the memory's input (needs a hidden cell).
    memory_to_memory : bool
        Feed the previous memory into the memory's input (``recurrent_kernel``).
    input_to_hidden : bool
        Feed the input to the hidden cell beside the memory, as ``[m_t, x_t]``.  Without a
        hidden cell the output is then ``[m_t, x_t]`` itself (memory_d * order + input_d
        features), as in keras-lmu.  ``dropout`` acts on the memory's input, not on this
        ``x_t`` (except in the Keras LMUFeedforward, and the Keras LMU with a linear memory,
        which drop their inputs before everything, as keras-lmu's do).
    discretizer : {"zoh", "euler", "bilinear"}
    kernel_initializer : str, callable or None
        None removes the input kernel: the input must then have ``memory_d`` features.
    recurrent_initializer : str or callable
    use_bias : bool
    bias_initializer : str or callable
    dropout : float in [0, 1)
        Dropout on the memory's input (mask fixed over the sequence, off at inference).
    recurrent_dropout : float in [0, 1)
        Dropout on the memory fed back through ``recurrent_kernel`` (needs memory_to_memory).
    return_sequences : bool
        Output every step, or only the last.
    conv_mode : {"auto", "fft", "raw", "last_state", "recurrent"}
        How the memory is computed; see :func:`select_mode`.
    truncate_ir : float in (0, 1) or None
        In "raw" mode, drop the impulse response's tail once its relative norm is below this.
    input_d : int or None
        Expected number of input features, checked against the input when given.
    """

    memory_d: int
    order: int
    theta: float | tuple[float, ...]
    hidden_cell: Any = None
    trainable_theta: bool = False
    trainable_A: bool = False  # noqa: N815 (the math's name)
    trainable_B: bool = False  # noqa: N815
    hidden_to_memory: bool = False
    memory_to_memory: bool = False
    input_to_hidden: bool = False
    discretizer: str = "zoh"
    kernel_initializer: Any = "glorot_uniform"
    recurrent_initializer: Any = "orthogonal"
    use_bias: bool = False
    bias_initializer: Any = "zeros"
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    return_sequences: bool = False
    conv_mode: str = "auto"
    truncate_ir: float | None = 1e-4
    input_d: int | None = None

    def __post_init__(self) -> None:
        put = object.__setattr__
        memory_d = _positive_int("memory_d", self.memory_d)
        put(self, "memory_d", memory_d)
        put(self, "order", _positive_int("order", self.order))
        put(self, "theta", _check_theta(self.theta, memory_d))
        if isinstance(self.hidden_cell, Mapping):
            put(self, "hidden_cell", hidden_cell_spec(self.hidden_cell))
        elif isinstance(self.hidden_cell, (str, bytes, numbers.Number)) or (
            self.hidden_cell is not None and type(self.hidden_cell).__module__ == "numpy"
        ):
            raise ValueError(
                "hidden_cell must be None, a spec dict such as {'type': 'lstm', 'units': 16} "
                f"or a framework layer (got {self.hidden_cell!r})"
            )
        for name in (
            "trainable_theta",
            "trainable_A",
            "trainable_B",
            "hidden_to_memory",
            "memory_to_memory",
            "input_to_hidden",
            "use_bias",
            "return_sequences",
        ):
            put(self, name, _flag(name, getattr(self, name)))
        if not isinstance(self.discretizer, str) or self.discretizer not in DISCRETIZERS:
            raise ValueError(
                f"discretizer must be one of {DISCRETIZERS} (got {self.discretizer!r})"
            )
        put(
            self,
            "kernel_initializer",
            normalize_initializer("kernel_initializer", self.kernel_initializer, allow_none=True),
        )
        put(
            self,
            "recurrent_initializer",
            normalize_initializer("recurrent_initializer", self.recurrent_initializer),
        )
        put(
            self,
            "bias_initializer",
            normalize_initializer("bias_initializer", self.bias_initializer),
        )
        put(self, "dropout", _rate("dropout", self.dropout))
        put(self, "recurrent_dropout", _rate("recurrent_dropout", self.recurrent_dropout))
        if not isinstance(self.conv_mode, str) or self.conv_mode not in CONV_MODES:
            raise ValueError(f"conv_mode must be one of {CONV_MODES} (got {self.conv_mode!r})")
        if self.truncate_ir is not None:
            if not _is_real(self.truncate_ir) or not (0 < self.truncate_ir < 1):
                raise ValueError(
                    f"truncate_ir must be a number in (0, 1) or None (got {self.truncate_ir!r})"
                )
            put(self, "truncate_ir", float(self.truncate_ir))
        if self.input_d is not None:
            put(self, "input_d", _positive_int("input_d", self.input_d))
        self._check_combinations()

    def _check_combinations(self) -> None:
        if self.hidden_cell is None and self.hidden_to_memory:
            # (input_to_hidden=True without a hidden cell is allowed: the output is [m_t, x_t])
            raise ValueError(
                "hidden_to_memory=True needs a hidden_cell (got hidden_cell=None): the memory's "
                "input [x_t, h_{t-1}] takes the hidden cell's previous output"
            )
        if self.conv_mode in LTI_MODES and not self.is_lti:
            raise ValueError(
                f"conv_mode={self.conv_mode!r} needs a linear memory: it cannot be used with "
                f"hidden_to_memory={self.hidden_to_memory}, "
                f"memory_to_memory={self.memory_to_memory} (use 'recurrent' or 'auto')"
            )
        if self.conv_mode == "last_state":
            if self.return_sequences:
                raise ValueError(
                    "conv_mode='last_state' computes only the final step: it needs "
                    "return_sequences=False (got return_sequences=True)"
                )
            if self.hidden_cell_stateful is True:
                raise ValueError(
                    "conv_mode='last_state' needs a stateless hidden cell or none "
                    f"(got hidden_cell type {self.hidden_cell['type']!r})"
                )
        if self.kernel_initializer is None and self.input_d is not None:
            # without a kernel the memory's input [x, h] feeds the memory_d dimensions directly
            if not self.hidden_to_memory and self.input_d != self.memory_d:
                raise ValueError(
                    "kernel_initializer=None means no input kernel, so input_d must equal "
                    f"memory_d (got input_d={self.input_d}, memory_d={self.memory_d})"
                )
            if self.hidden_to_memory and isinstance(self.hidden_cell, Mapping):
                units = self.hidden_cell["units"]
                if self.input_d + units != self.memory_d:
                    raise ValueError(
                        "kernel_initializer=None means no input kernel, so with "
                        "hidden_to_memory input_d + hidden units must equal memory_d (got "
                        f"input_d={self.input_d}, units={units}, memory_d={self.memory_d})"
                    )
        if self.recurrent_dropout > 0 and not self.memory_to_memory:
            warnings.warn(
                f"recurrent_dropout={self.recurrent_dropout} has no effect without "
                "memory_to_memory=True (it drops the memory fed back through recurrent_kernel)",
                UserWarning,
                stacklevel=4,
            )

    # -- derived facts ---------------------------------------------------------------------
    @property
    def is_lti(self) -> bool:
        """Whether the memory is a linear time-invariant filter of the input."""
        return not (self.hidden_to_memory or self.memory_to_memory)

    @property
    def hidden_cell_type(self) -> str | None:
        """ "dense", "simple_rnn", "gru", "lstm" for a neutral spec, "native" or None."""
        if self.hidden_cell is None:
            return None
        if isinstance(self.hidden_cell, Mapping):
            return str(self.hidden_cell["type"])
        return "native"

    @property
    def hidden_cell_stateful(self) -> bool | None:
        """Whether the hidden cell is recurrent; None when it is native (the backend knows)."""
        kind = self.hidden_cell_type
        if kind is None:
            return False
        if kind == "native":
            return None
        return HIDDEN_CELL_TYPES[kind]

    @property
    def thetas(self) -> tuple[float, ...]:
        """theta for each memory dimension (length memory_d)."""
        if isinstance(self.theta, tuple):
            return self.theta
        return (float(self.theta),) * self.memory_d

    @property
    def per_dim_theta(self) -> bool:
        """Whether theta was given per memory dimension."""
        return isinstance(self.theta, tuple)

    def __hash__(self) -> int:
        # the neutral hidden-cell spec (and a dict initializer) is a dict: hash its items
        def key(value: Any) -> Any:
            if isinstance(value, Mapping):
                return tuple(sorted((k, key(v)) for k, v in value.items()))
            if isinstance(value, list):
                return tuple(key(v) for v in value)
            return value

        return hash(tuple(key(getattr(self, f.name)) for f in dataclasses.fields(self)))

    def replace(self, **changes: Any) -> LMUConfig:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """All fields as plain Python values.

        Raises
        ------
        NotSerializableError
            When a field holds a framework object (a native hidden cell, an initializer
            object or callable): the core cannot write it and does not drop it silently.
        """
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "hidden_cell" and value is not None and not isinstance(value, Mapping):
                raise NotSerializableError(
                    f"hidden_cell is a framework object ({type(value).__name__}) that the core "
                    "cannot serialise; use a neutral spec such as "
                    "{'type': 'lstm', 'units': 16} or the backend's own serialisation"
                )
            if field.name.endswith("_initializer") and not (
                value is None or isinstance(value, (str, Mapping))
            ):
                raise NotSerializableError(
                    f"{field.name} is a framework object or callable ({value!r}) that the core "
                    f"cannot serialise; use one of {INITIALIZERS}"
                )
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = copy.deepcopy(dict(value))
            out[field.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LMUConfig:
        """Build (and validate) a config from :meth:`to_dict`'s output.

        Raises
        ------
        ValueError
            For unknown keys or invalid values.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"from_dict needs a mapping of field names (got {data!r})")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(
                f"unknown LMUConfig fields {sorted(unknown)}; allowed: {sorted(names)}"
            )
        return cls(**dict(data))

    def to_json(self) -> str:
        """The config as a JSON string (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LMUConfig:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def _check_theta(theta: Any, memory_d: int) -> float | tuple[float, ...]:
    if _is_real(theta):
        value = float(theta)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"theta must be > 0 and finite (got {theta!r})")
        return value
    if getattr(theta, "ndim", None) == 0 and hasattr(theta, "item"):  # a 0-d array: a scalar
        return _check_theta(theta.item(), memory_d)
    try:
        if isinstance(theta, (str, bytes)):
            raise TypeError
        values = [float(v) for v in theta]
        if any(isinstance(v, bool) or not _is_real(v) for v in theta):
            raise TypeError
    except (TypeError, ValueError):
        raise ValueError(
            f"theta must be a positive number or a sequence of memory_d={memory_d} of them "
            f"(got {theta!r})"
        ) from None
    if len(values) != memory_d:
        raise ValueError(
            f"theta per memory dimension must have memory_d={memory_d} entries "
            f"(got {len(values)}: {values!r})"
        )
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"theta must be > 0 and finite (got {values!r})")
    return tuple(values)


def select_mode(
    config: LMUConfig, hidden_stateful: bool | None = None, seq_len: int | None = None
) -> str:
    """The execution mode for a config: the explicit ``conv_mode``, or what "auto" picks.

    "auto" gives "recurrent" when the memory is not linear time-invariant; "last_state" when
    only the final step is wanted and the hidden cell is stateless (or absent); otherwise
    "raw" (direct convolution) for short sequences and "fft" for long ones.

    Parameters
    ----------
    config : LMUConfig
    hidden_stateful : bool, optional
        Whether the hidden cell is recurrent.  Defaults to what the config knows
        (:attr:`LMUConfig.hidden_cell_stateful`); required for a native hidden cell.
    seq_len : int, optional
        Sequence length, when known.

    Returns
    -------
    str
        One of "fft", "raw", "last_state", "recurrent".

    Raises
    ------
    ValueError
        If the explicit ``conv_mode`` is "last_state" and the hidden cell is stateful, or
        ``hidden_stateful`` is not given for a native hidden cell.
    """
    if hidden_stateful is None:
        hidden_stateful = config.hidden_cell_stateful
        if hidden_stateful is None:
            raise ValueError(
                "select_mode needs hidden_stateful for a native hidden cell (got None)"
            )
    mode = config.conv_mode
    if mode == "last_state" and hidden_stateful:
        raise ValueError(
            "conv_mode='last_state' needs a stateless hidden cell or none (got a recurrent "
            "hidden cell)"
        )
    if mode != "auto":
        return mode
    if not config.is_lti:
        return "recurrent"
    if not config.return_sequences and not hidden_stateful:
        return "last_state"
    if seq_len is not None and seq_len <= RAW_MAX_LEN:
        return "raw"
    return "fft"


#: Sequences up to this length use direct convolution under conv_mode="auto".
RAW_MAX_LEN = 64
