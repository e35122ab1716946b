"""The hidden cell: built from a neutral spec, classified, and run one step or a sequence.

Kinds:

* ``None``: no hidden cell; the output is the memory.
* ``"dense"``: a plain ``keras.layers.Dense``, computed here from its weights.
* ``"stateless"``: any other layer without ``state_size`` (e.g. Dense); its last output is kept as
  its state, as in keras-lmu and :mod:`lmu.reference`.
* ``"simple_rnn"``, ``"gru"``, ``"lstm"``: Keras' own cells without dropout.  Their input
  projections are computed for all steps at once, outside the recurrent loop.
* ``"generic"``: any other Keras RNN cell, called step by step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import keras
from keras import ops

try:
    from keras.src.backend import rnn as _backend_rnn
except ImportError:  # pragma: no cover - other Keras layouts
    _backend_rnn = None

__all__ = [
    "classify",
    "time_loop",
    "input_projection",
    "make_hidden_cell",
    "output_size",
    "run_sequence",
    "state_sizes",
    "step_fn",
]

_FAST = {
    keras.layers.SimpleRNNCell: "simple_rnn",
    keras.layers.GRUCell: "gru",
    keras.layers.LSTMCell: "lstm",
}


def time_loop(
    step: Callable[[list[Any], list[Any]], tuple[Any, list[Any]]],
    inputs: list[Any],
    states: list[Any],
    return_sequences: bool,
) -> tuple[Any, list[Any]]:
    """Loop ``step(inputs_t, states) -> (output, states)`` over axis 1 of ``inputs``.

    Uses Keras' own RNN loop (``keras.src.backend.rnn``: tf.while_loop, lax.scan or a Python
    loop, the one keras.layers.RNN uses), falling back to ``keras.ops.scan``.

    Returns
    -------
    outputs : tensor
        (batch, time, features) with return_sequences, else the last output.
    states : list of tensor
        The final states.
    """
    if _backend_rnn is not None:
        last, outputs, final = _backend_rnn(
            lambda x_t, s: step(list(x_t), list(s)),
            list(inputs),
            list(states),
            input_length=inputs[0].shape[1],
            return_all_outputs=return_sequences,
        )
        return (outputs if return_sequences else last), list(final)

    def body(carry: list[Any], xs: list[Any]) -> tuple[list[Any], list[Any]]:
        out, new = step(list(xs), list(carry[1:]))
        nxt = [out, *new]
        return nxt, nxt

    seqs = [ops.transpose(x, (1, 0) + tuple(range(2, len(x.shape)))) for x in inputs]
    out0, _ = step([x[0] for x in seqs], list(states))
    final, ys = ops.scan(body, [ops.zeros_like(out0), *states], seqs)
    out = ops.transpose(ys[0], (1, 0, 2)) if return_sequences else final[0]
    return out, list(final[1:])


def make_hidden_cell(spec: Mapping[str, Any], dtype: Any, name: str | None = None) -> Any:
    """A Keras layer for a validated neutral spec ``{"type", "units", "activation"}``."""
    kind, units, act = spec["type"], int(spec["units"]), spec["activation"]
    kw = {"dtype": dtype, "name": name}
    if kind == "dense":
        return keras.layers.Dense(units, activation=act, **kw)
    if kind == "simple_rnn":
        return keras.layers.SimpleRNNCell(units, activation=act, **kw)
    if kind == "gru":
        return keras.layers.GRUCell(units, activation=act, reset_after=True, **kw)
    return keras.layers.LSTMCell(units, activation=act, **kw)


def _tanh(x: Any) -> Any:
    # tanh through exp: Keras' ops.tanh returns float32 for float64 input under JAX
    return 1.0 - 2.0 / (ops.exp(2.0 * x) + 1.0)


def activation(fn: Any) -> Callable[[Any], Any]:
    """A cell's activation that keeps its input's dtype on every Keras backend."""
    if keras.backend.backend() != "jax":
        return fn
    if fn is keras.activations.tanh:
        return _tanh

    def keep_dtype(x: Any) -> Any:
        y = fn(x)
        return y if y.dtype == x.dtype else ops.cast(y, x.dtype)

    return keep_dtype


def classify(cell: Any) -> str | None:
    """The kind of a hidden cell (see the module docstring)."""
    if cell is None:
        return None
    if not hasattr(cell, "state_size"):
        plain = type(cell) is keras.layers.Dense
        if plain and not getattr(cell, "lora_enabled", False):
            if getattr(cell, "quantization_mode", None) is None:
                return "dense"
        return "stateless"
    kind = _FAST.get(type(cell))
    if kind is None or cell.dropout or cell.recurrent_dropout:
        return "generic"
    if kind == "gru" and not cell.reset_after:
        return "generic"
    return kind


def _flat_sizes(size: Any) -> list[int]:
    if isinstance(size, (list, tuple)):
        out: list[int] = []
        for s in size:
            out.extend(_flat_sizes(s))
        return out
    return [int(size)]


def output_size(cell: Any, kind: str | None, in_features: int | None = None) -> int:
    """Features the cell outputs per step."""
    if kind in ("stateless", "dense"):
        units = getattr(cell, "units", None)
        if units is not None:
            return int(units)
        if in_features is None:
            raise ValueError(
                f"the output size of hidden_cell {cell!r} is unknown before it is built"
            )
        return int(cell.compute_output_shape((None, in_features))[-1])
    size = getattr(cell, "output_size", None)
    if size is None:
        size = _flat_sizes(cell.state_size)[0]
    return int(size)


def state_sizes(cell: Any, kind: str | None, in_features: int | None = None) -> list[int]:
    """Sizes of the hidden states (the last output for a stateless cell)."""
    if kind is None:
        return []
    if kind in ("stateless", "dense"):
        return [output_size(cell, kind, in_features)]
    return _flat_sizes(cell.state_size)


def matmul_last(x: Any, w: Any) -> Any:
    """``x @ w`` over the last axis, as one 2-D product (a cheaper gradient for ``w``)."""
    if len(x.shape) == 2:
        return ops.matmul(x, w)
    lead = ops.shape(x)[:-1]
    y = ops.matmul(ops.reshape(x, (-1, x.shape[-1])), w)
    return ops.reshape(y, (*lead, w.shape[-1]))


def input_projection(cell: Any, kind: str, x: Any, rows: slice | None = None) -> Any:
    """``x @ kernel[rows]`` (+ the input bias when ``rows`` starts at 0 or is None)."""
    kernel = cell.kernel if rows is None else cell.kernel[rows]
    z = matmul_last(x, ops.cast(kernel, x.dtype))
    if cell.use_bias and (rows is None or not rows.start):  # the bias goes with the first rows
        bias = cell.bias[0] if kind == "gru" else cell.bias
        z = z + ops.cast(bias, x.dtype)
    return z


class _Fast:
    """A Keras SimpleRNN/GRU/LSTM cell's weights and activations, read once per call."""

    def __init__(self, cell: Any, kind: str, dtype: Any) -> None:
        self.kind = kind
        self.R = ops.cast(cell.recurrent_kernel, dtype)
        self.act = activation(cell.activation)
        self.ra = activation(getattr(cell, "recurrent_activation", None) or (lambda v: v))
        self.rec_bias = None
        if kind == "gru" and cell.use_bias:
            self.rec_bias = ops.cast(cell.bias[1], dtype)

    def update(self, z: Any, states: list[Any]) -> tuple[Any, list[Any]]:
        """One step from the input projection ``z`` (input bias included)."""
        h = states[0]
        if self.kind == "simple_rnn":
            out = self.act(z + ops.matmul(h, self.R))
            return out, [out]
        if self.kind == "lstm":
            z = z + ops.matmul(h, self.R)
            i, f, g, o = ops.split(z, 4, axis=-1)
            c = self.ra(f) * states[1] + self.ra(i) * self.act(g)
            out = self.ra(o) * self.act(c)
            return out, [out, c]
        hz = ops.matmul(h, self.R)
        if self.rec_bias is not None:
            hz = hz + self.rec_bias
        xz_, xr, xh = ops.split(z, 3, axis=-1)
        hz_, hr, hh = ops.split(hz, 3, axis=-1)
        zg = self.ra(xz_ + hz_)
        r = self.ra(xr + hr)
        cand = self.act(xh + r * hh)
        out = zg * h + (1.0 - zg) * cand
        return out, [out]


def _dense(cell: Any, x: Any) -> Any:
    y = matmul_last(x, ops.cast(cell.kernel, x.dtype))
    if cell.bias is not None:
        y = y + ops.cast(cell.bias, x.dtype)
    return activation(cell.activation)(y)


def _apply_stateless(cell: Any, x: Any, training: Any, kind: str = "stateless") -> Any:
    if kind == "dense":
        return _dense(cell, x)
    shape = ops.shape(x)
    if len(x.shape) == 2:
        return cell(x, training=training)
    flat = ops.reshape(x, (-1, x.shape[-1]))
    out = cell(flat, training=training)
    return ops.reshape(out, (shape[0], shape[1], out.shape[-1]))


def step_fn(
    cell: Any, kind: str | None, training: Any, dtype: Any = None, rows: int | None = None
) -> Callable[..., tuple[Any, list[Any]]]:
    """``step(h_in, states, z=None) -> (output, states)`` for one time step.

    Weights are read (and sliced) here, once, outside any loop.  ``z`` is an optional part of
    the input projection computed outside the loop (fast kinds only, with ``rows`` the number
    of ``h_in`` features): it is added to ``h_in @ kernel[:rows]``.
    """
    fast = None
    kernel = bias = None
    if kind in ("simple_rnn", "gru", "lstm"):
        fast = _Fast(cell, kind, dtype)
        kernel = ops.cast(cell.kernel if rows is None else cell.kernel[:rows], dtype)
        if cell.use_bias:
            bias = ops.cast(cell.bias[0] if kind == "gru" else cell.bias, dtype)

    def step(h_in: Any, states: list[Any], z: Any = None) -> tuple[Any, list[Any]]:
        if kind is None:
            return h_in, []
        if kind in ("stateless", "dense"):
            out = _apply_stateless(cell, h_in, training, kind)
            return out, [out]
        if kind == "generic":
            out, new = cell(h_in, states, training=training)
            return out, list(new) if isinstance(new, (list, tuple)) else [new]
        proj = ops.matmul(h_in, kernel)
        if bias is not None:
            proj = proj + bias
        return fast.update(proj if z is None else proj + z, states)

    return step


def run_sequence(
    cell: Any,
    kind: str | None,
    h_in: Any,
    states: list[Any],
    training: Any,
    return_sequences: bool,
) -> tuple[Any, list[Any]]:
    """Apply the hidden cell to every step of ``h_in`` (batch, time, features).

    Returns the outputs (every step, or the last one) and the final hidden states.
    """
    if kind is None:
        out = h_in if return_sequences else h_in[:, -1]
        return out, []
    if kind in ("stateless", "dense"):
        if not return_sequences:
            out = _apply_stateless(cell, h_in[:, -1], training, kind)
            return out, [out]
        out = _apply_stateless(cell, h_in, training, kind)
        return out, [out[:, -1]]
    if kind == "generic":
        if hasattr(cell, "reset_dropout_mask"):
            cell.reset_dropout_mask()
            cell.reset_recurrent_dropout_mask()

        def generic_step(xs: list[Any], st: list[Any]) -> tuple[Any, list[Any]]:
            out, new = cell(xs[0], st, training=training)
            return out, list(new) if isinstance(new, (list, tuple)) else [new]

        out, final = time_loop(generic_step, [h_in], list(states), return_sequences)
        if hasattr(cell, "reset_dropout_mask"):
            cell.reset_dropout_mask()
            cell.reset_recurrent_dropout_mask()
        return out, final
    # fast Keras cells: all input projections in one matmul, then the recurrence
    z = input_projection(cell, kind, h_in)  # (B, T, units * gates)
    return run_projected(cell, kind, z, states, return_sequences)


def run_projected(
    cell: Any, kind: str, z: Any, states: list[Any], return_sequences: bool
) -> tuple[Any, list[Any]]:
    """The recurrence of a fast cell from its input projections ``z`` (B, T, units * gates)."""
    fast = _Fast(cell, kind, z.dtype)

    def fast_step(xs: list[Any], st: list[Any]) -> tuple[Any, list[Any]]:
        return fast.update(xs[0], st)

    return time_loop(fast_step, [z], list(states), return_sequences)
