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

__all__ = [
    "classify",
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


def input_projection(cell: Any, kind: str, x: Any, rows: slice | None = None) -> Any:
    """``x @ kernel[rows]`` (+ the input bias when ``rows`` starts at 0 or is None)."""
    kernel = cell.kernel if rows is None else cell.kernel[rows]
    z = ops.matmul(x, ops.cast(kernel, x.dtype))
    if cell.use_bias and (rows is None or not rows.start):
        bias = cell.bias[0] if kind == "gru" else cell.bias
        z = z + ops.cast(bias, x.dtype)
    return z


def _fast_update(cell: Any, kind: str, z: Any, states: list[Any]) -> tuple[Any, list[Any]]:
    """One step of a Keras SimpleRNN/GRU/LSTM cell from its input projection ``z``."""
    h = states[0]
    R = ops.cast(cell.recurrent_kernel, z.dtype)
    act = activation(cell.activation)
    if kind == "simple_rnn":
        out = act(z + ops.matmul(h, R))
        return out, [out]
    if kind == "lstm":
        z = z + ops.matmul(h, R)
        i, f, g, o = ops.split(z, 4, axis=-1)
        ra = activation(cell.recurrent_activation)
        c = ra(f) * states[1] + ra(i) * act(g)
        out = ra(o) * act(c)
        return out, [out, c]
    hz = ops.matmul(h, R)
    if cell.use_bias:
        hz = hz + ops.cast(cell.bias[1], z.dtype)
    xz_, xr, xh = ops.split(z, 3, axis=-1)
    hz_, hr, hh = ops.split(hz, 3, axis=-1)
    ra = activation(cell.recurrent_activation)
    zg = ra(xz_ + hz_)
    r = ra(xr + hr)
    cand = act(xh + r * hh)
    out = zg * h + (1.0 - zg) * cand
    return out, [out]


def _dense(cell: Any, x: Any) -> Any:
    y = ops.matmul(x, ops.cast(cell.kernel, x.dtype))
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


def step_fn(cell: Any, kind: str | None, training: Any) -> Callable[..., tuple[Any, list[Any]]]:
    """``step(h_in, states, z=None) -> (output, states)`` for one time step.

    ``z`` is an optional part of the input projection computed outside the loop (fast kinds
    only): it is added to ``h_in @ kernel[:h_in features]``.
    """

    def step(h_in: Any, states: list[Any], z: Any = None) -> tuple[Any, list[Any]]:
        if kind is None:
            return h_in, []
        if kind in ("stateless", "dense"):
            out = _apply_stateless(cell, h_in, training, kind)
            return out, [out]
        if kind == "generic":
            out, new = cell(h_in, states, training=training)
            return out, list(new) if isinstance(new, (list, tuple)) else [new]
        rows = slice(0, h_in.shape[-1])
        proj = input_projection(cell, kind, h_in, rows if z is not None else None)
        return _fast_update(cell, kind, proj if z is None else proj + z, states)

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

        def body(carry: Any, x_t: Any) -> tuple[Any, Any]:
            out, new = cell(x_t, list(carry[1:]), training=training)
            new = list(new) if isinstance(new, (list, tuple)) else [new]
            nxt = [out, *new]
            return nxt, nxt

        seq = ops.transpose(h_in, (1, 0, 2))
        zero_out = ops.zeros((ops.shape(h_in)[0], output_size(cell, kind)), dtype=h_in.dtype)
        init = [zero_out, *states]
        final, ys = ops.scan(body, init, seq)
        if hasattr(cell, "reset_dropout_mask"):
            cell.reset_dropout_mask()
            cell.reset_recurrent_dropout_mask()
        out = ops.transpose(ys[0], (1, 0, 2)) if return_sequences else final[0]
        return out, list(final[1:])
    # fast Keras cells: all input projections in one matmul, then the recurrence
    z = ops.transpose(input_projection(cell, kind, h_in), (1, 0, 2))  # (T, B, units*gates)

    def fast_body(carry: Any, z_t: Any) -> tuple[Any, Any]:
        _, new = _fast_update(cell, kind, z_t, list(carry))
        return new, new

    final, ys = ops.scan(fast_body, list(states), z)
    out = ops.transpose(ys[0], (1, 0, 2)) if return_sequences else final[0]
    return out, list(final)
