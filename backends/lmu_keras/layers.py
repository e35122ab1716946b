"""Keras 3 LMU layers: LMUCell, LMU and LMUFeedforward, drop-in for keras-lmu 0.9.

The arguments before ``*`` are keras-lmu 0.9's, in its order and with its defaults; those
after are this project's additions.  Registered with ``keras.saving`` under the package "lmu".
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from . import _hidden
from ._base import LMUBase
from ._memory import memory_step
from ._sequence import SequenceLayer

try:  # the mixin keras.layers.RNN uses to reset a cell's dropout masks once per sequence
    from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell
except ImportError:  # pragma: no cover - layout of other Keras versions

    class DropoutRNNCell:  # type: ignore[no-redef]
        """Fallback: masks are drawn per call."""

        def reset_dropout_mask(self) -> None:
            """No cached mask to reset."""

        def reset_recurrent_dropout_mask(self) -> None:
            """No cached mask to reset."""


__all__ = ["LMU", "LMUCell", "LMUFeedforward"]

_SHARED_DOC = """
    memory_d : int
        Number of memory dimensions (each a Legendre memory of ``order`` coefficients).
    order : int
        Legendre order: coefficients kept per memory dimension.
    theta : float or sequence of float
        Window length in steps (> 0, finite), or one per memory dimension.
    hidden_cell : keras layer, dict or None
        A Keras layer (a stateless layer such as Dense, or an RNN cell), a neutral spec
        ``{"type": "dense" | "simple_rnn" | "gru" | "lstm", "units": int, "activation": str}``,
        or None (the output is the memory ``m_t``, or ``[m_t, x_t]`` with input_to_hidden, as
        in keras-lmu).
"""


@keras.saving.register_keras_serializable(package="lmu")
class LMUCell(DropoutRNNCell, LMUBase):
    """One LMU step, for ``keras.layers.RNN``.

    Parameters
    ----------
    memory_d, order, theta, hidden_cell
        See :class:`LMU`.
    trainable_theta : bool
        Learn theta (stored as the weight ``theta_inv``).
    hidden_to_memory, memory_to_memory, input_to_hidden : bool
        Optional connections (previous hidden output into the memory; previous memory into
        the memory through ``recurrent_kernel``; input into the hidden cell).  With
        hidden_cell=None and input_to_hidden=True the output is ``[m_t, x_t]`` (x_t as given,
        not dropped), as in keras-lmu.
    discretizer : {"zoh", "euler", "bilinear"}
    kernel_initializer : initializer or None
        None removes the input kernel (the memory's input must have memory_d features).
    recurrent_initializer, bias_initializer : initializer
    kernel_regularizer, recurrent_regularizer, bias_regularizer : regularizer or None
    use_bias : bool
    dropout, recurrent_dropout : float
        Dropout on the memory's input and on the memory fed back (mask fixed per sequence).
    input_d : int, optional
        Expected input features, checked at build time.  With hidden_cell=None and
        input_to_hidden=True it gives ``output_size`` before the cell is built (keras-lmu
        requires it there; here it is needed only when ``output_size`` is asked before build).
    seed : int, optional
        Seed of the dropout masks.
    trainable_A, trainable_B : bool
        Fine-tune the continuous A and B (weights ``A``, ``B``; re-discretised per call).
    **kwargs
        Keras layer arguments (name, dtype, ...).
    """

    _arg_names = (
        "memory_d",
        "order",
        "theta",
        "hidden_cell",
        "trainable_theta",
        "hidden_to_memory",
        "memory_to_memory",
        "input_to_hidden",
        "discretizer",
        "kernel_initializer",
        "recurrent_initializer",
        "kernel_regularizer",
        "recurrent_regularizer",
        "use_bias",
        "bias_initializer",
        "bias_regularizer",
        "dropout",
        "recurrent_dropout",
        "input_d",
        "seed",
        "trainable_A",
        "trainable_B",
    )

    def __init__(
        self,
        memory_d: int,
        order: int,
        theta: Any,
        hidden_cell: Any,
        trainable_theta: bool = False,
        hidden_to_memory: bool = False,
        memory_to_memory: bool = False,
        input_to_hidden: bool = False,
        discretizer: str = "zoh",
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        use_bias: bool = False,
        bias_initializer: Any = "zeros",
        bias_regularizer: Any = None,
        dropout: float = 0,
        recurrent_dropout: float = 0,
        input_d: int | None = None,
        seed: int | None = None,
        *,
        trainable_A: bool = False,
        trainable_B: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._setup(
            memory_d=memory_d,
            order=order,
            theta=theta,
            hidden_cell=hidden_cell,
            trainable_theta=trainable_theta,
            hidden_to_memory=hidden_to_memory,
            memory_to_memory=memory_to_memory,
            input_to_hidden=input_to_hidden,
            discretizer=discretizer,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            use_bias=use_bias,
            bias_initializer=bias_initializer,
            bias_regularizer=bias_regularizer,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            input_d=input_d,
            seed=seed,
            trainable_A=trainable_A,
            trainable_B=trainable_B,
        )

    @property
    def state_size(self) -> list[int]:
        """``[memory_d * order, *hidden state sizes]``."""
        return self.state_sizes(getattr(self, "_built_input_d", self.input_d))

    @property
    def output_size(self) -> int:
        """Features output per step."""
        return self.hidden_output_size(getattr(self, "_built_input_d", self.input_d))

    def build(self, input_shape: Any) -> None:
        """Create the weights for inputs of shape (batch, features)."""
        self._build_weights(tuple(input_shape)[-1])
        self.built = True

    def get_initial_state(self, batch_size: Any = None) -> list[Any]:
        """Zero states ``[memory, *hidden]``."""
        return [ops.zeros((batch_size, n), dtype=self.compute_dtype) for n in self.state_size]

    def call(self, inputs: Any, states: Any, training: Any = False) -> tuple[Any, list[Any]]:
        """One step: ``(output, [memory, *hidden])`` from ``inputs`` (batch, features)."""
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        self._check_step(inputs, states)
        x = ops.cast(inputs, self.compute_dtype)
        m, h = states[0], states[1:]
        u_in = ops.concatenate([x, h[0]], axis=-1) if self.hidden_to_memory else x
        if training and self.dropout > 0:
            u_in = u_in * self.get_dropout_mask(u_in)
        u = ops.matmul(u_in, self._w(self.kernel)) if self.kernel is not None else u_in
        if self.bias is not None:
            u = u + self._w(self.bias)
        if self.memory_to_memory:
            mf = m
            if training and self.recurrent_dropout > 0:
                mf = m * self.get_recurrent_dropout_mask(m)
            u = u + ops.matmul(mf, self._w(self.recurrent_kernel))
        system = self._system()
        Ad_T = ops.transpose(system.Ad, (0, 2, 1))
        m3 = memory_step(ops.reshape(m, (-1, self.memory_d, self.order)), u, system, Ad_T)
        m = ops.reshape(m3, (-1, self.memory_size))
        h_in = ops.concatenate([m, x], axis=-1) if self.input_to_hidden else m
        if self.hidden_cell is None:  # the output is m, or [m, x] (not dropped) as in keras-lmu
            return h_in, [m]
        step = _hidden.step_fn(self.hidden_cell, self.hidden_kind, training, x.dtype)
        out, h = step(h_in, list(h))
        return out, [m, *h]

    def _check_step(self, inputs: Any, states: list[Any]) -> None:
        """A clear ValueError for an input or states that do not fit (static shapes only)."""
        shape = tuple(inputs.shape)
        if len(shape) != 2:
            raise ValueError(
                f"LMUCell inputs must have shape (batch, features), one step (got shape {shape})"
            )
        if getattr(self, "_built_input_d", None) is not None:
            self._check_features(shape)
            self._check_state_shapes(states, "states")

    def reset_dropout_mask(self) -> None:
        """Forget the cached input mask (and the hidden cell's)."""
        super().reset_dropout_mask()
        if hasattr(self.hidden_cell, "reset_dropout_mask"):
            self.hidden_cell.reset_dropout_mask()

    def reset_recurrent_dropout_mask(self) -> None:
        """Forget the cached recurrent mask (and the hidden cell's)."""
        super().reset_recurrent_dropout_mask()
        if hasattr(self.hidden_cell, "reset_recurrent_dropout_mask"):
            self.hidden_cell.reset_recurrent_dropout_mask()


@keras.saving.register_keras_serializable(package="lmu")
class LMU(SequenceLayer):
    """A Legendre Memory Unit over whole sequences, computed in the fastest exact mode.

    Parameters
    ----------
    memory_d, order, theta, hidden_cell
        See the module docs: memory dimensions, Legendre order, window (float or one per
        memory dimension), hidden cell (Keras layer, neutral spec dict, or None).
    trainable_theta, hidden_to_memory, memory_to_memory, input_to_hidden : bool
    discretizer : {"zoh", "euler", "bilinear"}
    kernel_initializer, recurrent_initializer, bias_initializer : initializer
        ``kernel_initializer=None`` removes the input kernel.
    kernel_regularizer, recurrent_regularizer, bias_regularizer : regularizer or None
    use_bias : bool
    dropout, recurrent_dropout : float
        One mask per sequence.  As keras-lmu's ``LMU``: with a linear memory (no
        hidden_to_memory, memory_to_memory or trainable_theta, where keras-lmu runs its
        LMUFeedforward) ``dropout`` acts on the inputs before everything, so with
        input_to_hidden the hidden cell (or the ``[m_t, x_t]`` output) gets the dropped
        input; otherwise (as its LMUCell) only on the memory's input ``[x_t, h_{t-1}]``.
    return_sequences : bool
        Output every step, or only the last.
    trainable_A, trainable_B : bool
        Fine-tune the continuous A and B.
    conv_mode : {"auto", "last_state", "fft", "raw", "recurrent"}
        Execution mode; "auto" picks (:func:`lmu.select_mode`); ``layer.mode`` is the mode
        the latest call used.
    truncate_ir : float or None
        Impulse-response truncation in "raw" mode (None: exact).
    return_state, go_backwards, stateful : bool
        As in ``keras.layers.RNN``; states are ``[memory, *hidden]``.
    input_d : int, optional
        Expected input features.
    seed : int, optional
        Seed of the dropout masks.
    **kwargs
        Keras layer arguments.
    """

    @property
    def _drop_inputs_first(self) -> bool:  # type: ignore[override]
        # keras-lmu's LMU builds its LMUFeedforward for exactly these configurations
        return not (self.hidden_to_memory or self.memory_to_memory or self.trainable_theta)

    _arg_names = (
        "memory_d",
        "order",
        "theta",
        "hidden_cell",
        "trainable_theta",
        "hidden_to_memory",
        "memory_to_memory",
        "input_to_hidden",
        "discretizer",
        "kernel_initializer",
        "recurrent_initializer",
        "kernel_regularizer",
        "recurrent_regularizer",
        "use_bias",
        "bias_initializer",
        "bias_regularizer",
        "dropout",
        "recurrent_dropout",
        "return_sequences",
        "trainable_A",
        "trainable_B",
        "conv_mode",
        "truncate_ir",
        "return_state",
        "go_backwards",
        "stateful",
        "input_d",
        "seed",
    )

    def __init__(
        self,
        memory_d: int,
        order: int,
        theta: Any,
        hidden_cell: Any,
        trainable_theta: bool = False,
        hidden_to_memory: bool = False,
        memory_to_memory: bool = False,
        input_to_hidden: bool = False,
        discretizer: str = "zoh",
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        use_bias: bool = False,
        bias_initializer: Any = "zeros",
        bias_regularizer: Any = None,
        dropout: float = 0,
        recurrent_dropout: float = 0,
        return_sequences: bool = False,
        *,
        trainable_A: bool = False,
        trainable_B: bool = False,
        conv_mode: str = "auto",
        truncate_ir: float | None = 1e-4,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        input_d: int | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._setup(
            memory_d=memory_d,
            order=order,
            theta=theta,
            hidden_cell=hidden_cell,
            trainable_theta=trainable_theta,
            hidden_to_memory=hidden_to_memory,
            memory_to_memory=memory_to_memory,
            input_to_hidden=input_to_hidden,
            discretizer=discretizer,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            use_bias=use_bias,
            bias_initializer=bias_initializer,
            bias_regularizer=bias_regularizer,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            return_sequences=return_sequences,
            trainable_A=trainable_A,
            trainable_B=trainable_B,
            conv_mode=conv_mode,
            truncate_ir=truncate_ir,
            input_d=input_d,
            seed=seed,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
        )
        self._setup_sequence(return_sequences, return_state, go_backwards, stateful)

    def _hidden_first(self, variables: list[Any]) -> list[Any]:
        if self.hidden_cell is None:
            return variables
        hidden = {id(w) for w in self.hidden_cell.variables}
        return [w for w in variables if id(w) in hidden] + [
            w for w in variables if id(w) not in hidden
        ]

    @property
    def weights(self) -> list[Any]:
        """keras-lmu's order for LMU: the hidden cell's weights, then the memory's."""
        return self._hidden_first(super().weights)

    @property
    def variables(self) -> list[Any]:
        """The same order as :attr:`weights`.

        Keras builds an optimizer from ``trainable_weights`` when training and from
        ``trainable_variables`` when loading a saved model; both must list the variables in
        one order, or the saved optimizer state cannot be restored.
        """
        return self._hidden_first(super().variables)


@keras.saving.register_keras_serializable(package="lmu")
class LMUFeedforward(SequenceLayer):
    """The LMU whose memory is a linear filter, computed in parallel (no recurrent loop
    over the memory).

    Parameters
    ----------
    memory_d, order, theta, hidden_cell, input_to_hidden, discretizer, kernel_initializer,
    kernel_regularizer, use_bias, bias_initializer, bias_regularizer, return_sequences
        See :class:`LMU`.
    dropout : float
        Dropout on the inputs, before everything (one mask per sequence and feature), as in
        keras-lmu's LMUFeedforward: with input_to_hidden the hidden cell gets the dropped
        input too (and, without a hidden cell, the output is ``[m_t, dropped x_t]``).  So
        does :class:`LMU` with a linear memory; :class:`LMUCell` drops only the memory's
        input.
    conv_mode : {"fft", "raw", "auto", "last_state"}
        "fft" by default, as in keras-lmu.
    truncate_ir : float or None
        Impulse-response truncation in "raw" mode.
    trainable_theta, trainable_A, trainable_B : bool
        Learn theta, A, B (re-discretised once per call; the parallel modes are kept).
    return_state, go_backwards, stateful : bool
    input_d : int, optional
    seed : int, optional
    **kwargs
        Keras layer arguments.
    """

    _drop_inputs_first = True  # keras-lmu's LMUFeedforward (see dropout above)

    _arg_names = (
        "memory_d",
        "order",
        "theta",
        "hidden_cell",
        "input_to_hidden",
        "discretizer",
        "kernel_initializer",
        "kernel_regularizer",
        "use_bias",
        "bias_initializer",
        "bias_regularizer",
        "dropout",
        "return_sequences",
        "conv_mode",
        "truncate_ir",
        "trainable_theta",
        "trainable_A",
        "trainable_B",
        "return_state",
        "go_backwards",
        "stateful",
        "input_d",
        "seed",
    )

    def __init__(
        self,
        memory_d: int,
        order: int,
        theta: Any,
        hidden_cell: Any,
        input_to_hidden: bool = False,
        discretizer: str = "zoh",
        kernel_initializer: Any = "glorot_uniform",
        kernel_regularizer: Any = None,
        use_bias: bool = False,
        bias_initializer: Any = "zeros",
        bias_regularizer: Any = None,
        dropout: float = 0,
        return_sequences: bool = False,
        conv_mode: str = "fft",
        truncate_ir: float | None = 1e-4,
        *,
        trainable_theta: bool = False,
        trainable_A: bool = False,
        trainable_B: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        input_d: int | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if conv_mode == "recurrent":
            raise ValueError(
                "LMUFeedforward computes the memory in parallel: conv_mode must be one of "
                "('fft', 'raw', 'last_state', 'auto') (got 'recurrent'); use LMU instead"
            )
        self._setup(
            memory_d=memory_d,
            order=order,
            theta=theta,
            hidden_cell=hidden_cell,
            input_to_hidden=input_to_hidden,
            discretizer=discretizer,
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            use_bias=use_bias,
            bias_initializer=bias_initializer,
            bias_regularizer=bias_regularizer,
            dropout=dropout,
            return_sequences=return_sequences,
            conv_mode=conv_mode,
            truncate_ir=truncate_ir,
            trainable_theta=trainable_theta,
            trainable_A=trainable_A,
            trainable_B=trainable_B,
            input_d=input_d,
            seed=seed,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
        )
        self._setup_sequence(return_sequences, return_state, go_backwards, stateful)

    def select_mode(self, seq_len: int | None) -> str:
        """The mode a call uses ("fft" for a stateful hidden cell asked for last_state)."""
        mode = super().select_mode(seq_len)
        if mode == "last_state" and self.hidden_kind not in (None, "stateless", "dense"):
            return "fft"
        return mode
