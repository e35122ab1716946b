"""The sequence layer's forward pass: mode choice, the four modes, states, stateful, reverse.

Modes (see DESIGN.md): "last_state" (one contraction for the final step), "fft" (blocked FFT
convolution), "raw" (direct convolution, impulse response truncated at truncate_ir), and
"recurrent" (a loop over time with every input projection computed before the loop).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from lmu.config import select_mode

from . import _hidden
from ._base import LMUBase
from ._memory import (
    free_last,
    memory_fft,
    memory_last,
    memory_raw,
    memory_step,
    projected_fft,
)

__all__ = ["SequenceLayer"]


class SequenceLayer(LMUBase):
    """LMU over whole sequences (the base of LMU and LMUFeedforward)."""

    #: Where ``dropout`` acts.  False (LMU, as keras-lmu's LMUCell): on the memory's input
    #: ``[x_t, h_{t-1}]`` only; the hidden cell (and the output without one) sees ``x_t`` as
    #: given.  True (LMUFeedforward, as keras-lmu's): on the inputs before everything, so the
    #: hidden cell also gets the dropped ``x_t``.  One mask per sequence either way.
    _drop_inputs_first: bool = False

    def _setup_sequence(
        self,
        return_sequences: bool,
        return_state: bool,
        go_backwards: bool,
        stateful: bool,
    ) -> None:
        for name, value in (
            ("return_state", return_state),
            ("go_backwards", go_backwards),
            ("stateful", stateful),
        ):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False (got {value!r})")
            setattr(self, name, value)
        self.return_sequences = self.config_.return_sequences
        self.conv_mode = self.config_.conv_mode
        self.truncate_ir = self.config_.truncate_ir
        self.states = None
        self.mode: str | None = None  # the mode used by the latest call

    # -- build --------------------------------------------------------------------------------
    def build(self, input_shape: Any) -> None:
        """Create the weights (and state variables when stateful)."""
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape (batch, time, features) "
                f"(got shape {input_shape})"
            )
        self._build_weights(input_shape[-1])
        if self.stateful:
            if input_shape[0] is None:
                raise ValueError(
                    "stateful=True needs a fixed batch size (got input shape "
                    f"{input_shape}); give the Input a batch_size"
                )
            self._create_state_variables(int(input_shape[0]))
        self.built = True

    def _create_state_variables(self, batch: int) -> None:
        sizes = self.state_sizes(self._built_input_d)
        with keras.name_scope(self.name):
            states = [
                keras.Variable(
                    ops.zeros((batch, n), dtype=self.variable_dtype),
                    trainable=False,
                    name=f"state_{i}",
                )
                for i, n in enumerate(sizes)
            ]
        object.__setattr__(self, "states", states)

    def reset_state(self) -> None:
        """Set the stored states of a stateful layer to zeros."""
        if self.states is not None:
            for v in self.states:
                v.assign(ops.zeros_like(v.value))

    def reset_states(self) -> None:
        """Alias of :meth:`reset_state`."""
        self.reset_state()

    def get_initial_state(self, batch_size: Any) -> list[Any]:
        """Zero states ``[memory, *hidden]`` for a batch."""
        return [
            ops.zeros((batch_size, n), dtype=self.compute_dtype)
            for n in self.state_sizes(self._built_input_d)
        ]

    # -- checks -------------------------------------------------------------------------------
    def _check_inputs(self, x: Any) -> None:
        if len(x.shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape (batch, time, features) "
                f"(got shape {tuple(x.shape)})"
            )
        self._check_features(tuple(x.shape))
        if x.shape[1] == 0:
            raise ValueError(
                f"inputs must have at least one time step (got shape {tuple(x.shape)})"
            )

    def _check_state(self, state: Any) -> list[Any]:
        if not isinstance(state, (list, tuple)):
            state = [state]
        out = [ops.convert_to_tensor(s, dtype=self.compute_dtype) for s in state]
        self._check_state_shapes(out, "initial_state")
        return out

    # -- forward ------------------------------------------------------------------------------
    def select_mode(self, seq_len: int | None) -> str:
        """The mode a call with ``seq_len`` steps uses."""
        stateful_hidden = self.hidden_kind not in (None, "stateless", "dense")
        mode = select_mode(self.config_, stateful_hidden, seq_len)
        if mode != "recurrent" and seq_len is None:
            return "recurrent"  # the parallel modes need a static sequence length
        return mode

    def call(self, inputs: Any, initial_state: Any = None, training: Any = None) -> Any:
        """Run the LMU over ``inputs`` (batch, time, features).

        Returns the output (every step with return_sequences, else the last), followed by
        the final states ``[memory, *hidden]`` when return_state is True.
        """
        x = ops.cast(inputs, self.compute_dtype)
        self._check_inputs(x)
        if initial_state is not None:
            states = self._check_state(initial_state)
        elif self.stateful:
            states = [ops.cast(v.value, self.compute_dtype) for v in self.states]
        else:
            states = None
        if self.go_backwards:
            x = ops.flip(x, axis=1)
        mode = self.select_mode(x.shape[1])
        self.mode = mode
        training = bool(training)
        if training and self.dropout > 0 and self._drop_inputs_first:
            # keras-lmu's LMUFeedforward: Dropout with noise_shape (batch, 1, features)
            x = x * self._draw_dropout_mask(
                ops.zeros((ops.shape(x)[0], 1, x.shape[-1]), x.dtype), self.dropout
            )
        if mode == "recurrent":
            out, new_states = self._run_recurrent(x, states, training)
        else:
            out, new_states = self._run_lti(x, states, training, mode)
        if self.stateful:
            for v, s in zip(self.states, new_states, strict=True):
                v.assign(ops.cast(s, v.dtype))
        if self.return_state:
            return [out, *new_states]
        return out

    def _zero_states(self, x: Any) -> list[Any]:
        return self.get_initial_state(ops.shape(x)[0])

    def _input_masks(self, x: Any, training: bool) -> tuple[Any, Any, Any]:
        """Dropout masks (fixed over the sequence): memory input (x part, h part), memory."""
        x_mask = h_mask = r_mask = None
        if training and self.dropout > 0 and not self._drop_inputs_first:
            width = x.shape[-1] + (
                self.hidden_output_size(self._built_input_d) if self.hidden_to_memory else 0
            )
            mask = self._draw_dropout_mask(
                ops.zeros((ops.shape(x)[0], width), x.dtype), self.dropout
            )
            x_mask = mask[:, : x.shape[-1]]
            h_mask = mask[:, x.shape[-1] :]
        if training and self.recurrent_dropout > 0 and self.memory_to_memory:
            r_mask = self._draw_dropout_mask(
                ops.zeros((ops.shape(x)[0], self.memory_size), x.dtype), self.recurrent_dropout
            )
        return x_mask, h_mask, r_mask

    def _run_lti(
        self, x: Any, states: list[Any] | None, training: bool, mode: str
    ) -> tuple[Any, list[Any]]:
        system = self._system()
        x_mask, _, _ = self._input_masks(x, training)
        md, n = self.memory_d, self.order
        batch = ops.shape(x)[0]
        m0 = None if states is None else ops.reshape(states[0], (-1, md, n))
        h0 = self._zero_states(x)[1:] if states is None else states[1:]
        input_first = system.groups == 1 and (self.kernel is None or x.shape[-1] <= md)
        if mode == "last_state" and input_first:
            # contract the input with the impulse response first, then apply the kernel: the
            # same forward cost, and no time-long gradient for the kernel
            z = memory_last(x, system)  # (B, input_d, n)
            if x_mask is not None:
                z = z * x_mask[:, :, None]
            m_last = (
                z if self.kernel is None else ops.einsum("bci,cd->bdi", z, self._w(self.kernel))
            )
            if self.bias is not None:
                h_sum = ops.sum(system.impulse(x.shape[1])[0], axis=0)
                m_last = m_last + self._w(self.bias)[None, :, None] * h_sum[None, None, :]
            if m0 is not None:
                m_last = m_last + free_last(m0, system, x.shape[1])
            return self._last_state_output(ops.reshape(m_last, (batch, md * n)), x, h0, training)
        u = x if x_mask is None else x * x_mask[:, None, :]
        if self.kernel is not None:
            u = _hidden.matmul_last(u, self._w(self.kernel))
        if self.bias is not None:
            u = u + self._w(self.bias)
        if mode == "last_state":
            m_last = ops.reshape(memory_last(u, system, m0), (batch, md * n))
            return self._last_state_output(m_last, x, h0, training)
        if mode == "fft" and self.hidden_kind in ("simple_rnn", "gru", "lstm"):
            return self._run_projected(u, x, system, m0, h0)
        if mode == "fft":
            m = memory_fft(u, system, m0)
        else:
            tol = self.truncate_ir if self.conv_mode == "raw" else None
            m = memory_raw(u, system, tol, m0)
        m = ops.reshape(m, (batch, x.shape[1], md * n))
        h_in = ops.concatenate([m, x], axis=-1) if self.input_to_hidden else m
        out, h = _hidden.run_sequence(
            self.hidden_cell, self.hidden_kind, h_in, h0, training, self.return_sequences
        )
        return out, [m[:, -1], *h]

    def _run_projected(
        self, u: Any, x: Any, system: Any, m0: Any, h0: list[Any]
    ) -> tuple[Any, list[Any]]:
        """A Keras SimpleRNN/GRU/LSTM cell over an FFT memory, without the memory sequence.

        The cell sees the memory only through its input kernel: ``m_t @ W_m`` is the memory
        input convolved with ``G = H @ W_m``, an impulse response of width units * gates
        instead of memory_d * order (as in the torch backend).  The final memory, the state,
        is one contraction.
        """
        md, n = self.memory_d, self.order
        T = x.shape[1]
        cell, kind = self.hidden_cell, self.hidden_kind
        kernel = ops.cast(cell.kernel, u.dtype)
        Wm = ops.reshape(kernel[: md * n], (md, n, -1))  # (md, n, k)
        H = system.impulse(T)  # (groups, T, n)
        if system.groups == 1:
            G = ops.einsum("tn,dnk->dtk", H[0], Wm)
        else:
            G = ops.einsum("dtn,dnk->dtk", H, Wm)
        z = projected_fft(u, G)  # (B, T, k)
        if self.input_to_hidden:
            z = z + _hidden.input_projection(cell, kind, x, slice(md * n, None))
        if cell.use_bias:
            z = z + ops.cast(cell.bias[0] if kind == "gru" else cell.bias, u.dtype)
        if m0 is not None:
            free = ops.reshape(system.free_response(m0, T), (-1, T, md * n))
            z = z + _hidden.matmul_last(free, kernel[: md * n])
        out, h = _hidden.run_projected(cell, kind, z, h0, self.return_sequences)
        m_last = ops.reshape(memory_last(u, system, m0), (-1, md * n))
        return out, [m_last, *h]

    def _last_state_output(
        self, m_last: Any, x: Any, h0: list[Any], training: bool
    ) -> tuple[Any, list[Any]]:
        h_in = ops.concatenate([m_last, x[:, -1]], axis=-1) if self.input_to_hidden else m_last
        out, h = _hidden.run_sequence(
            self.hidden_cell, self.hidden_kind, h_in[:, None], h0, training, False
        )
        return out, [m_last, *h]

    def _run_recurrent(
        self, x: Any, states: list[Any] | None, training: bool
    ) -> tuple[Any, list[Any]]:
        system = self._system()
        Ad_T = ops.transpose(system.Ad, (0, 2, 1))
        md, n = self.memory_d, self.order
        in_d = x.shape[-1]
        x_mask, h_mask, r_mask = self._input_masks(x, training)
        xm = x if x_mask is None else x * x_mask[:, None, :]
        kernel = None if self.kernel is None else self._w(self.kernel)
        bias = None if self.bias is None else self._w(self.bias)
        rk = None if self.recurrent_kernel is None else self._w(self.recurrent_kernel)
        # hoisted: the input's share of the memory input, for all steps at once
        if kernel is not None:
            xk = _hidden.matmul_last(xm, kernel[:in_d])
            if bias is not None:
                xk = xk + bias
        else:
            xk = xm
        kind, cell = self.hidden_kind, self.hidden_cell
        fast = kind in ("simple_rnn", "gru", "lstm")
        xh = None
        if fast and self.input_to_hidden:
            xh = _hidden.input_projection(cell, kind, x, slice(self.memory_size, None))
        step = _hidden.step_fn(
            cell, kind, training, x.dtype, self.memory_size if xh is not None else None
        )
        k_h = kernel[in_d:] if (kernel is not None and self.hidden_to_memory) else None
        if states is None:
            states = self._zero_states(x)
        h2m, m2m, i2h = self.hidden_to_memory, self.memory_to_memory, self.input_to_hidden

        def body(xs: list[Any], st: list[Any]) -> tuple[Any, list[Any]]:
            m, h = st[0], st[1:]
            xk_t, x_t = xs[0], xs[1]
            u = xk_t
            if h2m:
                hh = h[0] if h_mask is None else h[0] * h_mask
                if kernel is not None:
                    u = u + ops.matmul(hh, k_h)
                else:
                    u = ops.concatenate([u, hh], axis=-1)
                    if bias is not None:
                        u = u + bias
            elif kernel is None and bias is not None:
                u = u + bias
            if m2m:
                mf = m if r_mask is None else m * r_mask
                u = u + ops.matmul(mf, rk)
            m3 = memory_step(ops.reshape(m, (-1, md, n)), u, system, Ad_T)
            m = ops.reshape(m3, (-1, md * n))
            if kind is None:  # the output is m, or [m, x] (as keras-lmu)
                return (ops.concatenate([m, x_t], axis=-1) if i2h else m), [m]
            z = xs[2] if xh is not None else None
            h_in = ops.concatenate([m, x_t], axis=-1) if (i2h and z is None) else m
            out, h = step(h_in, list(h), z)
            return out, [m, *h]

        seqs = [xk, x] + ([xh] if xh is not None else [])
        if cell is not None and hasattr(cell, "reset_dropout_mask"):
            cell.reset_dropout_mask()
            cell.reset_recurrent_dropout_mask()
        out, final = _hidden.time_loop(body, seqs, list(states), self.return_sequences)
        if cell is not None and hasattr(cell, "reset_dropout_mask"):
            cell.reset_dropout_mask()
            cell.reset_recurrent_dropout_mask()
        return out, final

    def compute_output_shape(self, input_shape: Any) -> Any:
        """Output shape(s) for an input shape (batch, time, features)."""
        spec = self.compute_output_spec(keras.KerasTensor(tuple(input_shape)))
        if isinstance(spec, list):
            return tuple(tuple(s.shape) for s in spec)
        return tuple(spec.shape)

    def compute_output_spec(
        self, inputs: Any, initial_state: Any = None, training: Any = None
    ) -> Any:
        """Output shapes without running the layer."""
        shape = tuple(inputs.shape)
        if len(shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape (batch, time, features) "
                f"(got shape {shape})"
            )
        batch, T, d = shape
        units = self.hidden_output_size(d)
        out_shape = (batch, T, units) if self.return_sequences else (batch, units)
        out = keras.KerasTensor(out_shape, dtype=self.compute_dtype)
        if not self.return_state:
            return out
        return [out] + [
            keras.KerasTensor((batch, n), dtype=self.compute_dtype) for n in self.state_sizes(d)
        ]
