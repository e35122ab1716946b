"""What every LMU layer shares: options (validated by lmu.LMUConfig), weights, config I/O.

Weights are created in keras-lmu's order and with its names and shapes -- ``kernel``,
``bias``, ``theta_inv``, ``recurrent_kernel`` -- then this project's ``A`` and ``B`` (the
continuous matrices, with trainable_A / trainable_B), then the hidden cell's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
from keras import ops

from lmu.config import LMUConfig
from lmu.system import legendre_system

from . import _hidden
from ._system import DiscreteSystem

__all__ = ["LMUBase", "serialize_option"]


def serialize_option(value: Any) -> Any:
    """A config value as JSON-able data (Keras objects serialised, tuples as lists)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (tuple, list)):
        return [serialize_option(v) for v in value]
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, keras.layers.Layer):
        return keras.layers.serialize(value)
    return keras.saving.serialize_keras_object(value)


def deserialize_hidden_cell(value: Any) -> Any:
    """A hidden cell from a config: None, a neutral spec, or a serialised Keras layer."""
    if isinstance(value, Mapping) and "class_name" in value:
        return keras.layers.deserialize(dict(value))
    return value


def _initializer(value: Any) -> Any:
    return keras.initializers.get(value)


class LMUBase(keras.layers.Layer):
    """Shared machinery; subclasses call :meth:`_setup` from their ``__init__``."""

    #: Names of the subclass's ``__init__`` arguments, in order (for get_config).
    _arg_names: tuple[str, ...] = ()

    def _setup(
        self,
        *,
        memory_d: int,
        order: int,
        theta: Any,
        hidden_cell: Any,
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        seed: Any = None,
        **options: Any,
    ) -> None:
        hidden_cell = deserialize_hidden_cell(hidden_cell)
        self._options = dict(
            memory_d=memory_d, order=order, theta=theta, hidden_cell=hidden_cell, **options
        )
        if isinstance(theta, (list, np.ndarray)):
            theta = tuple(np.asarray(theta, dtype=np.float64).ravel().tolist())
        cfg = LMUConfig(
            memory_d=memory_d,
            order=order,
            theta=theta,
            hidden_cell=hidden_cell,
            **{k: v for k, v in options.items() if k in LMUConfig.__dataclass_fields__},
        )
        self.config_ = cfg
        self.memory_d = cfg.memory_d
        self.order = cfg.order
        self._init_theta = cfg.theta
        for name in (
            "trainable_theta",
            "trainable_A",
            "trainable_B",
            "hidden_to_memory",
            "memory_to_memory",
            "input_to_hidden",
            "discretizer",
            "use_bias",
            "dropout",
            "recurrent_dropout",
            "input_d",
        ):
            setattr(self, name, getattr(cfg, name))
        self.kernel_initializer = options.get("kernel_initializer", "glorot_uniform")
        self.recurrent_initializer = options.get("recurrent_initializer", "orthogonal")
        self.bias_initializer = options.get("bias_initializer", "zeros")
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        if isinstance(hidden_cell, Mapping):
            hidden_cell = _hidden.make_hidden_cell(cfg.hidden_cell, self.dtype_policy)
        self.hidden_cell = hidden_cell
        self.hidden_kind = _hidden.classify(hidden_cell)
        self.kernel = None
        self.bias = None
        self.theta_inv = None
        self.recurrent_kernel = None
        self.A = None
        self.B = None

    # -- sizes --------------------------------------------------------------------------------
    @property
    def memory_size(self) -> int:
        """``memory_d * order``: the size of the memory state."""
        return self.memory_d * self.order

    def hidden_input_size(self, input_d: int) -> int:
        """Features the hidden cell receives."""
        return self.memory_size + (input_d if self.input_to_hidden else 0)

    def hidden_output_size(self, input_d: int | None = None) -> int:
        """Features of the layer's output per step.

        Without a hidden cell that is ``memory_d * order``, plus the input features with
        input_to_hidden (the output is then ``[m_t, x_t]``, as in keras-lmu); ``input_d``
        defaults to the ``input_d`` option.

        Raises
        ------
        ValueError
            When the output size depends on an input size that is not known yet.
        """
        if self.hidden_cell is None:
            if not self.input_to_hidden:
                return self.memory_size
            if input_d is None:
                input_d = self.input_d
            if input_d is None:
                raise ValueError(
                    f"{type(self).__name__} with hidden_cell=None and input_to_hidden=True "
                    "outputs [m_t, x_t], whose size is unknown before the layer is built: pass "
                    "input_d=<input features> (got input_d=None)"
                )
            return self.memory_size + int(input_d)
        in_features = None if input_d is None else self.hidden_input_size(input_d)
        return _hidden.output_size(self.hidden_cell, self.hidden_kind, in_features)

    def state_sizes(self, input_d: int | None = None) -> list[int]:
        """``[memory_d * order, *hidden state sizes]``."""
        in_features = None if input_d is None else self.hidden_input_size(input_d)
        return [
            self.memory_size,
            *_hidden.state_sizes(self.hidden_cell, self.hidden_kind, in_features),
        ]

    # -- checks of a call's inputs and states (static shapes) -------------------------------
    def _check_features(self, shape: tuple[Any, ...]) -> None:
        """The input's last axis must match the features the layer was built for."""
        want = self._built_input_d
        if shape[-1] is not None and shape[-1] != want:
            raise ValueError(
                f"inputs must have {want} features, as when the layer was built (got shape {shape})"
            )

    def _check_state_shapes(self, states: list[Any], name: str) -> None:
        """``states`` must be ``[memory, *hidden]`` of the layer's state sizes."""
        sizes = self.state_sizes(self._built_input_d)
        if len(states) != len(sizes):
            raise ValueError(
                f"{name} must be a list of {len(sizes)} tensors [memory, *hidden] "
                f"with sizes {sizes} (got {len(states)} tensors)"
            )
        for i, (s, n) in enumerate(zip(states, sizes, strict=True)):
            if len(s.shape) != 2 or (s.shape[-1] is not None and s.shape[-1] != n):
                raise ValueError(
                    f"{name}[{i}] must have shape (batch, {n}) (got shape {tuple(s.shape)})"
                )

    # -- weights ------------------------------------------------------------------------------
    def _check_input_d(self, input_d: Any) -> None:
        if input_d is None:
            raise ValueError(
                f"{type(self).__name__} needs a known number of input features "
                "(the last axis of the input is None)"
            )
        if self.input_d is not None and input_d != self.input_d:
            raise ValueError(
                f"input_d={self.input_d} does not match the input's last axis (got {input_d} "
                "features)"
            )

    def _build_weights(self, input_d: int) -> None:
        self._check_input_d(input_d)
        self._built_input_d = int(input_d)
        if self.hidden_cell is not None and not self.hidden_cell.built:
            self.hidden_cell.build((None, self.hidden_input_size(input_d)))
        enc_d = input_d + (self.hidden_output_size(input_d) if self.hidden_to_memory else 0)
        if self.kernel_initializer is not None:
            self.kernel = self.add_weight(
                name="kernel",
                shape=(enc_d, self.memory_d),
                initializer=_initializer(self.kernel_initializer),
                regularizer=self.kernel_regularizer,
            )
        elif enc_d != self.memory_d:
            raise ValueError(
                f"kernel_initializer=None means no input kernel, so the memory's input must "
                f"have memory_d={self.memory_d} features (got {enc_d})"
            )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.memory_d,),
                initializer=_initializer(self.bias_initializer),
                regularizer=self.bias_regularizer,
            )
        if self.trainable_theta:
            per_dim = isinstance(self._init_theta, tuple)
            init = 1.0 / np.asarray(self._init_theta, dtype=np.float64)
            self.theta_inv = self.add_weight(
                name="theta_inv",
                shape=(self.memory_d,) if per_dim else (),
                initializer=keras.initializers.Constant(init),
                constraint=keras.constraints.NonNeg(),
            )
        if self.memory_to_memory:
            self.recurrent_kernel = self.add_weight(
                name="recurrent_kernel",
                shape=(self.memory_size, self.memory_d),
                initializer=_initializer(self.recurrent_initializer),
                regularizer=self.recurrent_regularizer,
            )
        A0, B0 = legendre_system(self.order)
        if self.trainable_A:
            self.A = self.add_weight(
                name="A", shape=A0.shape, initializer=keras.initializers.Constant(A0)
            )
        if self.trainable_B:
            self.B = self.add_weight(
                name="B", shape=B0.shape, initializer=keras.initializers.Constant(B0)
            )

    def _system(self) -> DiscreteSystem:
        """The discrete system for this call (re-discretised when trainable)."""
        return DiscreteSystem(
            self.order,
            self.config_.thetas,
            self.discretizer,
            self.compute_dtype,
            theta_inv=self.theta_inv,
            A=self.A,
            B=self.B,
        )

    def _w(self, var: Any) -> Any:
        return ops.cast(var, self.compute_dtype)

    @property
    def theta(self) -> Any:
        """theta: the trained value (``1 / theta_inv``) once built with trainable_theta."""
        if self.built and self.theta_inv is not None:
            inv = np.asarray(ops.convert_to_numpy(self.theta_inv), dtype=np.float64)
            return float(1.0 / inv) if inv.ndim == 0 else tuple((1.0 / inv).tolist())
        return self._init_theta

    def _draw_dropout_mask(self, like: Any, rate: float) -> Any:
        ones = ops.ones_like(like)
        return keras.random.dropout(ones, rate=rate, seed=self.seed_generator)

    # -- config ------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Every ``__init__`` argument (hidden cell, initializers, regularizers serialised)."""
        config = super().get_config()
        values = dict(self._options)
        values.update(
            kernel_regularizer=self.kernel_regularizer,
            recurrent_regularizer=self.recurrent_regularizer,
            bias_regularizer=self.bias_regularizer,
            seed=self.seed,
        )
        for name in self._arg_names:
            if name == "theta":
                theta = values["theta"]
                config[name] = list(theta) if isinstance(theta, tuple) else theta
            else:
                config[name] = serialize_option(values.get(name))
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LMUBase:
        """Rebuild from :meth:`get_config` (and from keras-lmu's configs)."""
        config = dict(config)
        config["hidden_cell"] = deserialize_hidden_cell(config.get("hidden_cell"))
        return cls(**config)

    @classmethod
    def from_lmu_config(cls, config: LMUConfig, **kwargs: Any) -> LMUBase:
        """Build from a validated :class:`lmu.LMUConfig` (used by ``lmu.get_layer``).

        Fields this class does not take are dropped when they hold their default value, and
        rejected otherwise.
        """
        import inspect

        params = inspect.signature(cls.__init__).parameters
        defaults = LMUConfig(memory_d=1, order=1, theta=1.0)
        args: dict[str, Any] = {}
        for name in LMUConfig.__dataclass_fields__:
            value = getattr(config, name)
            if name in params:
                args[name] = value
            elif value != getattr(defaults, name):
                raise ValueError(f"{cls.__name__} does not take {name} (got {name}={value!r})")
        if isinstance(args.get("theta"), tuple):
            args["theta"] = list(args["theta"])
        args.update(kwargs)
        return cls(**args)
