"""The torch LMU layers: LMUCell (one step), LMU (a sequence), LMUFeedforward (parallel only).

Execution modes of :class:`LMU` (``layer.mode`` after a call; see ``conv_mode``):

``last_state``
    Only the final step is wanted (return_sequences=False), the hidden cell is stateless or
    absent and the memory is linear: ``m_T`` is one contraction of the memory's input with the
    reversed impulse response, and the hidden cell runs once.
``fft``
    The whole memory sequence by FFT convolution with the impulse response, blocked along
    the order axis so the complex intermediates stay bounded.
``raw``
    Direct causal convolution; with an explicit ``conv_mode="raw"`` the impulse response is
    cut where its relative tail norm falls below ``truncate_ir`` (``"auto"`` never truncates).
``recurrent``
    The step loop, needed for hidden_to_memory / memory_to_memory; the input projections of
    all steps are computed in one matmul before the loop.

In the parallel modes an initial memory adds its free response ``Ad^(t+1) m0`` (computed by
doubling), so a sequence fed in chunks, passing the returned state on, equals the whole
sequence.  A stateful hidden cell over a linear memory runs after the parallel memory, in one
of torch's fused recurrent layers when the cell is a standard one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch

import lmu.system
from lmu.config import select_mode

from .base import LMUBase, compute_dtype
from .convolution import conv_fft, conv_last, conv_raw
from .discrete import free_response
from .hidden import NeutralHidden

__all__ = ["LMU", "LMUCell", "LMUFeedforward"]

State = tuple[torch.Tensor, ...]


def _memory_context(device_type: str) -> contextlib.AbstractContextManager[Any]:
    """Autocast off for the memory math (it stays in float32 or float64)."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _check_input(x: Any, ndim: int, layout: str, features: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor of shape {layout} (got {type(x).__name__})")
    if x.dim() != ndim:
        raise ValueError(f"x must have shape {layout} (got shape {tuple(x.shape)})")
    if x.shape[-1] != features:
        raise ValueError(
            f"x must have input_size={features} features in its last axis (got shape "
            f"{tuple(x.shape)})"
        )
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor (got dtype {x.dtype})")
    return x


class _Runner:
    """One forward call's shared pieces (dtype, device, masks, weights)."""

    def __init__(self, layer: LMUBase, x: torch.Tensor) -> None:
        self.layer = layer
        self.in_dtype = x.dtype
        self.dtype = compute_dtype(x.dtype)
        self.device = x.device
        self.ctx = _memory_context(x.device.type)
        self.batch = x.shape[0]

    def weight(self, p: torch.Tensor | None) -> torch.Tensor | None:
        return None if p is None else p.to(self.dtype)


def _project_input(layer: LMUBase, x: torch.Tensor, in_mask: torch.Tensor | None) -> torch.Tensor:
    """``(x * mask) @ kernel[:input_size] + bias`` for every step; x (batch, T, input_size)."""
    n_in = layer.input_size
    if in_mask is not None:
        x = x * in_mask[:, None, :n_in]
    if layer.kernel is not None:
        u = x @ layer.kernel[:n_in].to(x.dtype)
    else:
        u = x
    if layer.bias is not None:
        u = u + layer.bias.to(x.dtype)
    return u


def run_recurrent(
    layer: LMUBase,
    x: torch.Tensor,
    states: Sequence[torch.Tensor],
    in_mask: torch.Tensor | None,
    rec_mask: torch.Tensor | None,
    keep_all: bool,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The step loop.  x (batch, T, input_size) in the compute dtype; returns output(s), states."""
    c = layer.config
    dtype, device = x.dtype, x.device
    n_in = layer.input_size
    ctx = _memory_context(device.type)
    with ctx:
        Ad, Bd = layer.matrices(dtype, device)
        xp = _project_input(layer, x, in_mask)
        kh = (
            layer.kernel[n_in:].to(dtype)
            if (c.hidden_to_memory and layer.kernel is not None)
            else None
        )
        rk = layer.recurrent_kernel.to(dtype) if layer.recurrent_kernel is not None else None
    hidden = layer._hidden
    module = layer.hidden_cell
    neutral = isinstance(module, NeutralHidden)
    if neutral:
        W, b = module.projection()
        Wm = W[:, : layer.memory_size].T
        gx = b if b is not None else torch.zeros((), dtype=W.dtype, device=device)
        if c.input_to_hidden:
            gx = gx + x.to(W.dtype) @ W[:, layer.memory_size :].T
        else:
            gx = gx.expand(x.shape[0], x.shape[1], -1)
    m = states[0].to(dtype)
    h = list(states[1:])
    outs = []
    out = m
    for t in range(x.shape[1]):
        with ctx:
            u = xp[:, t]
            if c.hidden_to_memory:
                hin = h[0].to(dtype)
                if in_mask is not None:
                    hin = hin * in_mask[:, n_in:]
                u = u + hin @ kh if kh is not None else torch.cat([u, hin], dim=1)
            if rk is not None:
                u = u + (m * rec_mask if rec_mask is not None else m) @ rk
            m = layer.memory_step(m, u, Ad, Bd)
        if hidden is None:
            out = m
        elif neutral:
            gi = m.to(Wm.dtype) @ Wm + gx[:, t]
            out, h = module.step_projected(gi, h)
        else:
            inp = torch.cat([m, x[:, t]], dim=1) if c.input_to_hidden else m
            out, h = hidden.step(inp, h)
        if keep_all:
            outs.append(out)
    return (torch.stack(outs, dim=1) if keep_all else out), [m, *h]


def _truncated_length(layer: LMUBase, H: torch.Tensor) -> int:
    tol = layer.config.truncate_ir
    if layer.config.conv_mode != "raw" or tol is None:
        return H.shape[1]
    return lmu.system.truncation_length(H.detach().to("cpu", torch.float64).numpy(), tol)


def run_parallel(
    layer: LMUBase,
    x: torch.Tensor,
    states: Sequence[torch.Tensor] | None,
    in_mask: torch.Tensor | None,
    mode: str,
    keep_all: bool,
    hidden_dtype: torch.dtype,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A linear memory in one of the parallel modes, then the hidden cell."""
    c = layer.config
    md, order = c.memory_d, c.order
    batch, T, _ = x.shape
    dtype, device = x.dtype, x.device
    hidden = layer._hidden
    with _memory_context(device.type):
        u = _project_input(layer, x, in_mask)
        H = layer.impulse(T, dtype, device)
        if mode == "last_state":
            m3 = conv_last(u, H)
            if states is not None:
                P = layer.power(T, dtype, device).expand(md, -1, -1)
                m3 = m3 + torch.einsum(
                    "bdj,dij->bdi", states[0].to(dtype).reshape(batch, md, order), P
                )
            m_last = m3.reshape(batch, md * order)
            mseq = None
        else:
            if mode == "fft":
                m4 = conv_fft(u, H)
            else:
                m4 = conv_raw(u, H[:, : _truncated_length(layer, H)])
            if states is not None:
                Ad, _ = layer.matrices(dtype, device)
                m0 = states[0].to(dtype).reshape(batch, md, order)
                m4 = m4 + free_response(Ad, m0, T)
            mseq = m4.reshape(batch, T, md * order)
            m_last = mseq[:, -1]
    if hidden is None:
        out = mseq if keep_all else m_last
        return out, [m_last]
    h0 = (
        list(states[1:])
        if states is not None
        else [torch.zeros(batch, n, dtype=hidden_dtype, device=device) for n in hidden.state_sizes]
    )
    xh = x.to(hidden_dtype)
    if mseq is None or (not keep_all and not hidden.stateful):
        inp = m_last.to(hidden_dtype)
        if c.input_to_hidden:
            inp = torch.cat([inp, xh[:, -1]], dim=1)
        out, h = hidden.step(inp, h0)
        return out, [m_last, *h]
    inp = mseq.to(hidden_dtype)
    if c.input_to_hidden:
        inp = torch.cat([inp, xh], dim=2)
    outs, h = hidden.sequence(inp, h0)
    return (outs if keep_all else outs[:, -1]), [m_last, *h]


class LMUCell(LMUBase):
    """One LMU step (see :class:`lmu.LMUConfig` for the options).

    ``forward(x_t, state=None) -> (output, state)`` with x_t of shape (batch, input_size),
    output (batch, output_size) and state ``(memory (batch, memory_d * order), *hidden)``.

    Dropout masks are drawn per call in training mode unless given; pass the same
    ``input_mask`` / ``recurrent_mask`` (from :meth:`make_dropout_masks`) to every step to keep
    them fixed over a sequence, or use :class:`LMU`, which does that.
    """

    def forward(
        self,
        x: torch.Tensor,
        state: Sequence[torch.Tensor] | None = None,
        input_mask: torch.Tensor | None = None,
        recurrent_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, State]:
        """One step.

        Parameters
        ----------
        x : Tensor, shape (batch, input_size)
        state : tuple of Tensor, optional
            ``(memory, *hidden)``; zeros when omitted.
        input_mask, recurrent_mask : Tensor, optional
            Scaled dropout masks (see :meth:`make_dropout_masks`).

        Returns
        -------
        output : Tensor, shape (batch, output_size)
        state : tuple of Tensor

        Raises
        ------
        ValueError
            For an input or state of the wrong shape.
        """
        x = _check_input(x, 2, f"(batch, input_size={self.input_size})", self.input_size)
        self._check_theta_finite()
        r = _Runner(self, x)
        batch = x.shape[0]
        if state is None:
            states = list(self.initial_state(batch, r.dtype, r.device))
            states[1:] = [s.to(x.dtype) for s in states[1:]]
        else:
            states = self._check_state(state, batch)
        if input_mask is None and recurrent_mask is None:
            input_mask, recurrent_mask = self.make_dropout_masks(batch, r.dtype, r.device)
        self.mode = "recurrent"
        out, new = run_recurrent(
            self, x.to(r.dtype)[:, None], states, input_mask, recurrent_mask, keep_all=False
        )
        return out, tuple(new)


class LMU(LMUBase):
    """An LMU layer over whole sequences (see :class:`lmu.LMUConfig` for the options).

    Parameters
    ----------
    input_size, memory_d, order, theta, hidden_cell, **options
        As :class:`LMUCell`.
    batch_first : bool
        Input (batch, time, features) when True (the default), else (time, batch, features).

    Notes
    -----
    ``forward(x, state=None) -> (output, state)``: output (batch, time, output_size) with
    return_sequences=True, else (batch, output_size); state ``(memory, *hidden)``.
    ``layer.mode`` tells the execution mode of the last call (module docstring).
    """

    def __init__(self, *args: Any, batch_first: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_first = bool(batch_first)

    def choose_mode(self, seq_len: int | None = None) -> str:
        """The execution mode a call with ``seq_len`` steps uses."""
        return select_mode(self.config, self.hidden_stateful, seq_len)

    def forward(
        self, x: torch.Tensor, state: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, State]:
        """Run the layer over a sequence.

        Parameters
        ----------
        x : Tensor, shape (batch, time, input_size) (or time first without batch_first)
        state : tuple of Tensor, optional
            ``(memory, *hidden)`` from a previous call (continues the sequence exactly).

        Returns
        -------
        output : Tensor
        state : tuple of Tensor

        Raises
        ------
        ValueError
            For an input of the wrong rank or size, no time steps, or a state of the wrong
            shape.
        """
        layout = "(batch, time, input_size)" if self.batch_first else "(time, batch, input_size)"
        x = _check_input(
            x, 3, layout.replace("input_size", f"input_size={self.input_size}"), self.input_size
        )
        if not self.batch_first:
            x = x.transpose(0, 1)
        batch, T, _ = x.shape
        if T == 0:
            raise ValueError(f"x must have at least one time step (got shape {tuple(x.shape)})")
        self._check_theta_finite()
        r = _Runner(self, x)
        states = self._check_state(state, batch) if state is not None else None
        in_mask, rec_mask = self.make_dropout_masks(batch, r.dtype, r.device)
        mode = self.choose_mode(T)
        self.mode = mode
        keep_all = self.config.return_sequences
        xc = x.to(r.dtype)
        if mode == "recurrent":
            if states is None:
                states = list(self.initial_state(batch, r.dtype, r.device))
                states[1:] = [s.to(x.dtype) for s in states[1:]]
            out, new = run_recurrent(self, xc, states, in_mask, rec_mask, keep_all)
        else:
            out, new = run_parallel(self, xc, states, in_mask, mode, keep_all, x.dtype)
        if keep_all and not self.batch_first:
            out = out.transpose(0, 1)
        return out, tuple(new)


class LMUFeedforward(LMU):
    """The parallel LMU for configurations whose memory is a linear filter.

    As :class:`LMU` but refuses hidden_to_memory, memory_to_memory and conv_mode="recurrent",
    and ``forward(x)`` returns the output only (keras-lmu's LMUFeedforward contract); call
    :meth:`LMU.forward` through ``forward_with_state`` to get the state too.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        c = self.config
        if not c.is_lti:
            raise ValueError(
                "LMUFeedforward needs a linear memory: hidden_to_memory and memory_to_memory "
                f"must be False (got {c.hidden_to_memory}, {c.memory_to_memory}); use LMU"
            )
        if c.conv_mode == "recurrent":
            raise ValueError(
                "LMUFeedforward runs in parallel: conv_mode must be 'auto', 'fft', 'raw' or "
                "'last_state' (got 'recurrent'); use LMU"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """The output for a whole sequence (see :meth:`LMU.forward`)."""
        return super().forward(x)[0]

    def forward_with_state(
        self, x: torch.Tensor, state: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, State]:
        """:meth:`LMU.forward`: output and state."""
        return LMU.forward(self, x, state)
