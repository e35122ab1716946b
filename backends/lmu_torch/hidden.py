"""Hidden cells: neutral specs as torch modules, native cells, and a uniform calling interface.

A hidden cell maps the memory (and, with input_to_hidden, the input) to the layer's output.
Three sorts are accepted:

* a neutral spec ``{"type": "dense" | "simple_rnn" | "gru" | "lstm", "units", "activation"}``,
  built here as :class:`NeutralHidden` (torch's fused ``nn.RNN``/``nn.GRU``/``nn.LSTM`` carry
  the weights; the fused kernels run whenever the activation is the one torch implements);
* torch's ``nn.RNNCell``, ``nn.GRUCell``, ``nn.LSTMCell`` (stateful; LSTM state ``(h, c)``),
  run over whole sequences by torch's fused layers on the cell's own weights;
* any other ``nn.Module`` mapping (batch, n) to (batch, k), treated as stateless.  Its output
  size k is read from an ``out_features`` or ``units`` attribute, else found by one dry run on
  zeros of shape (1, n).

A stateless cell keeps its last output as its hidden state, as :mod:`lmu.reference` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import nn
from torch.func import functional_call

__all__ = ["ACTIVATIONS", "HiddenCell", "NeutralHidden"]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda v: v,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "elu": nnf.elu,
    "softplus": lambda v: nnf.softplus(v, threshold=40.0),
    "swish": nnf.silu,
}
_FUSED = {"simple_rnn": ("tanh", "relu"), "gru": ("tanh",), "lstm": ("tanh",)}
_GATES = {"dense": 1, "simple_rnn": 1, "gru": 3, "lstm": 4}
States = list[torch.Tensor]


def _gru_keras_to_torch(a: torch.Tensor, units: int) -> torch.Tensor:
    """Reorder the last axis from Keras' (z, r, h) to torch's (r, z, n); its own inverse."""
    return torch.cat([a[..., units : 2 * units], a[..., :units], a[..., 2 * units :]], dim=-1)


class NeutralHidden(nn.Module):
    """A hidden cell built from a neutral spec.

    Parameters
    ----------
    kind : {"dense", "simple_rnn", "gru", "lstm"}
    in_features : int
    units : int
    activation : str
        One of :data:`lmu.config.ACTIVATIONS` (for the gates' candidate and cell output).

    Notes
    -----
    The weights live in torch's layout: ``linear`` (an ``nn.Linear``) for "dense", else
    ``rnn`` (an ``nn.RNN``/``nn.GRU``/``nn.LSTM``, one layer, batch_first).  Use
    :meth:`load_canonical` / :meth:`canonical_weights` to move Keras-layout weights in and out.
    """

    def __init__(self, kind: str, in_features: int, units: int, activation: str = "tanh") -> None:
        super().__init__()
        self.kind = kind
        self.in_features = in_features
        self.units = units
        self.activation = activation
        self.act = ACTIVATIONS[activation]
        self.fused = activation in _FUSED.get(kind, ())
        if kind == "dense":
            self.linear = nn.Linear(in_features, units)
        elif kind == "simple_rnn":
            nl = activation if activation in ("tanh", "relu") else "tanh"
            self.rnn = nn.RNN(in_features, units, nonlinearity=nl, batch_first=True)
        elif kind == "gru":
            self.rnn = nn.GRU(in_features, units, batch_first=True)
        elif kind == "lstm":
            self.rnn = nn.LSTM(in_features, units, batch_first=True)
        else:
            raise ValueError(
                f"hidden_cell type must be dense, simple_rnn, gru or lstm (got {kind!r})"
            )

    @property
    def stateful(self) -> bool:
        """Whether the cell carries its own recurrent state."""
        return self.kind != "dense"

    @property
    def state_sizes(self) -> list[int]:
        """Sizes of the hidden states."""
        return [self.units, self.units] if self.kind == "lstm" else [self.units]

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, units={self.units}, activation={self.activation!r}"

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        r = self.rnn
        return r.weight_ih_l0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0

    def projection(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The input weight (torch layout, (gates * units, in_features)) and input bias."""
        if self.kind == "dense":
            return self.linear.weight, self.linear.bias
        return self.rnn.weight_ih_l0, self.rnn.bias_ih_l0

    # -- one step ------------------------------------------------------------------------
    def input_projection(self, inp: torch.Tensor) -> torch.Tensor:
        """``inp @ W_ih^T + b_ih`` (hoisted out of a step loop)."""
        if self.kind == "dense":
            return nnf.linear(inp, self.linear.weight, self.linear.bias)
        w_ih, _, b_ih, _ = self._weights()
        return nnf.linear(inp, w_ih, b_ih)

    def recurrent_weight(self) -> torch.Tensor:
        """The recurrent weight, torch layout (gates * units, units)."""
        return self.rnn.weight_hh_l0

    def step_projected(
        self,
        gi: torch.Tensor,
        states: Sequence[torch.Tensor],
        gh: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, States]:
        """One step given the input projection ``gi`` (and ``h @ W_hh^T`` if known)."""
        if self.kind == "dense":
            out = self.act(gi)
            return out, [out]
        _, w_hh, _, b_hh = self._weights()
        h = states[0]
        gh = nnf.linear(h, w_hh, b_hh) if gh is None else gh + b_hh
        u = self.units
        if self.kind == "simple_rnn":
            out = self.act(gi + gh)
            return out, [out]
        if self.kind == "gru":
            r = torch.sigmoid(gi[:, :u] + gh[:, :u])
            z = torch.sigmoid(gi[:, u : 2 * u] + gh[:, u : 2 * u])
            cand = self.act(gi[:, 2 * u :] + r * gh[:, 2 * u :])
            out = (1.0 - z) * cand + z * h
            return out, [out]
        g = gi + gh
        c = torch.sigmoid(g[:, u : 2 * u]) * states[1] + torch.sigmoid(g[:, :u]) * self.act(
            g[:, 2 * u : 3 * u]
        )
        out = torch.sigmoid(g[:, 3 * u :]) * self.act(c)
        return out, [out, c]

    def step(
        self, inp: torch.Tensor, states: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, States]:
        """One step: (input (batch, in_features), states) -> (output, new states)."""
        if self.fused:
            w_ih, w_hh, b_ih, b_hh = self._weights()
            if self.kind == "simple_rnn":
                fn = torch.rnn_tanh_cell if self.activation == "tanh" else torch.rnn_relu_cell
                out = fn(inp, states[0], w_ih, w_hh, b_ih, b_hh)
                return out, [out]
            if self.kind == "gru":
                out = torch.gru_cell(inp, states[0], w_ih, w_hh, b_ih, b_hh)
                return out, [out]
            h, c = torch.lstm_cell(inp, (states[0], states[1]), w_ih, w_hh, b_ih, b_hh)
            return h, [h, c]
        return self.step_projected(self.input_projection(inp), states)

    # -- a whole sequence ------------------------------------------------------------------
    def sequence(
        self, inp: torch.Tensor, states: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, States]:
        """All steps: input (batch, T, in_features) -> outputs (batch, T, units), states."""
        if self.kind == "dense":
            out = self.act(self.input_projection(inp))
            return out, [out[:, -1]]
        if self.fused:
            if self.kind == "lstm":
                out, (h, c) = self.rnn(inp, (states[0][None], states[1][None]))
                return out, [h[0], c[0]]
            out, h = self.rnn(inp, states[0][None])
            return out, [h[0]]
        gi = self.input_projection(inp)
        outs = []
        cur = list(states)
        for t in range(inp.shape[1]):
            o, cur = self.step_projected(gi[:, t], cur)
            outs.append(o)
        return torch.stack(outs, dim=1), cur

    # -- Keras-layout weights --------------------------------------------------------------
    @torch.no_grad()
    def load_canonical(self, weights: Mapping[str, Any]) -> None:
        """Load ``hidden_kernel``, ``hidden_recurrent_kernel``, ``hidden_bias`` (Keras layout)."""

        def get(name: str) -> torch.Tensor:
            ref = self.linear.weight if self.kind == "dense" else self.rnn.weight_ih_l0
            return torch.as_tensor(np.asarray(weights[name]), dtype=ref.dtype, device=ref.device)

        K = get("hidden_kernel")
        b = get("hidden_bias")
        if self.kind == "dense":
            self.linear.weight.copy_(K.T)
            self.linear.bias.copy_(b)
            return
        w_ih, w_hh, b_ih, b_hh = self._weights()
        R = get("hidden_recurrent_kernel")
        if self.kind == "gru":
            w_ih.copy_(_gru_keras_to_torch(K, self.units).T)
            w_hh.copy_(_gru_keras_to_torch(R, self.units).T)
            b_ih.copy_(_gru_keras_to_torch(b[0], self.units))
            b_hh.copy_(_gru_keras_to_torch(b[1], self.units))
            return
        w_ih.copy_(K.T)
        w_hh.copy_(R.T)
        b_ih.copy_(b)
        b_hh.zero_()

    @torch.no_grad()
    def canonical_weights(self) -> dict[str, np.ndarray]:
        """The weights in the Keras layout of :mod:`lmu.reference` (float64 NumPy)."""

        def np64(t: torch.Tensor) -> np.ndarray:
            return t.detach().to("cpu", torch.float64).numpy().copy()

        if self.kind == "dense":
            return {
                "hidden_kernel": np64(self.linear.weight.T),
                "hidden_bias": np64(self.linear.bias),
            }
        w_ih, w_hh, b_ih, b_hh = self._weights()
        if self.kind == "gru":
            u = self.units
            return {
                "hidden_kernel": np64(_gru_keras_to_torch(w_ih.T, u)),
                "hidden_recurrent_kernel": np64(_gru_keras_to_torch(w_hh.T, u)),
                "hidden_bias": np64(
                    torch.stack([_gru_keras_to_torch(b_ih, u), _gru_keras_to_torch(b_hh, u)])
                ),
            }
        return {
            "hidden_kernel": np64(w_ih.T),
            "hidden_recurrent_kernel": np64(w_hh.T),
            "hidden_bias": np64(b_ih + b_hh),
        }


_NATIVE_CELLS = (nn.RNNCell, nn.GRUCell, nn.LSTMCell)


class HiddenCell:
    """A uniform interface over the three sorts of hidden cell (not a module itself).

    Parameters
    ----------
    module : nn.Module
        The cell (registered on the layer, so it follows ``.to()`` and ``state_dict``).
    in_features : int
        Features the cell receives.
    """

    def __init__(self, module: nn.Module, in_features: int) -> None:
        self.module = module
        self.in_features = in_features
        self._template: nn.Module | None = None
        if isinstance(module, NeutralHidden):
            self.stateful = module.stateful
            self.output_size = module.units
            self.state_sizes = module.state_sizes
        elif isinstance(module, _NATIVE_CELLS):
            if module.input_size != in_features:
                raise ValueError(
                    f"hidden_cell.input_size must be {in_features} (memory_d * order [+ input "
                    f"size with input_to_hidden]) (got {module.input_size})"
                )
            self.stateful = True
            self.output_size = module.hidden_size
            n = 2 if isinstance(module, nn.LSTMCell) else 1
            self.state_sizes = [module.hidden_size] * n
        else:
            self.stateful = False
            self.output_size = _output_size(module, in_features)
            self.state_sizes = [self.output_size]

    def step(
        self, inp: torch.Tensor, states: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, States]:
        """One step: (input (batch, n), states) -> (output (batch, k), new states)."""
        m = self.module
        if isinstance(m, NeutralHidden):
            return m.step(inp, states)
        if isinstance(m, nn.LSTMCell):
            h, c = m(inp, (states[0], states[1]))
            return h, [h, c]
        if isinstance(m, _NATIVE_CELLS):
            h = m(inp, states[0])
            return h, [h]
        out = m(inp)
        return out, [out]

    def sequence(
        self, inp: torch.Tensor, states: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, States]:
        """All steps: (input (batch, T, n), states) -> (outputs (batch, T, k), final states)."""
        m = self.module
        if isinstance(m, NeutralHidden):
            return m.sequence(inp, states)
        if isinstance(m, _NATIVE_CELLS):
            return self._native_sequence(inp, states)
        batch, T, n = inp.shape
        out = m(inp.reshape(batch * T, n))
        out = out.reshape(batch, T, out.shape[-1])
        return out, [out[:, -1]]

    def _native_sequence(
        self, inp: torch.Tensor, states: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, States]:
        m = self.module
        if self._template is None:
            if isinstance(m, nn.RNNCell):
                self._template = nn.RNN(
                    m.input_size,
                    m.hidden_size,
                    nonlinearity=m.nonlinearity,
                    bias=m.bias,
                    batch_first=True,
                )
            elif isinstance(m, nn.GRUCell):
                self._template = nn.GRU(m.input_size, m.hidden_size, bias=m.bias, batch_first=True)
            else:
                self._template = nn.LSTM(m.input_size, m.hidden_size, bias=m.bias, batch_first=True)
        params = {"weight_ih_l0": m.weight_ih, "weight_hh_l0": m.weight_hh}
        if m.bias:
            params.update(bias_ih_l0=m.bias_ih, bias_hh_l0=m.bias_hh)
        if isinstance(m, nn.LSTMCell):
            out, (h, c) = functional_call(
                self._template, params, (inp, (states[0][None], states[1][None]))
            )
            return out, [h[0], c[0]]
        out, h = functional_call(self._template, params, (inp, states[0][None]))
        return out, [h[0]]


def _output_size(module: nn.Module, in_features: int) -> int:
    for attr in ("out_features", "units"):
        value = getattr(module, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    try:
        param = next(module.parameters())
        dtype, device = param.dtype, param.device
    except StopIteration:
        dtype, device = torch.get_default_dtype(), torch.device("cpu")
    with torch.no_grad():
        out = module(torch.zeros(1, in_features, dtype=dtype, device=device))
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1:
        raise ValueError(
            "hidden_cell must map (batch, n) to (batch, k): a dry run on shape "
            f"(1, {in_features}) returned {getattr(out, 'shape', type(out).__name__)}"
        )
    return int(out.shape[1])
