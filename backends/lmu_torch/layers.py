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

from collections.abc import Sequence
from typing import Any

import torch

from lmu.config import select_mode

from .base import LMUBase, compute_dtype
from .execution import check_input, run_parallel, run_recurrent

__all__ = ["LMU", "LMUCell", "LMUFeedforward"]

State = tuple[torch.Tensor, ...]


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
        x = check_input(x, 2, f"(batch, input_size={self.input_size})", self.input_size)
        self._check_theta_finite()
        dtype, device = compute_dtype(x.dtype), x.device
        batch = x.shape[0]
        if state is None:
            states = list(self.initial_state(batch, dtype, device))
            states[1:] = [s.to(x.dtype) for s in states[1:]]
        else:
            states = self._check_state(state, batch)
        if input_mask is None and recurrent_mask is None:
            input_mask, recurrent_mask = self.make_dropout_masks(batch, dtype, device)
        self.mode = "recurrent"
        out, new = run_recurrent(
            self, x.to(dtype)[:, None], states, input_mask, recurrent_mask, keep_all=False
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
        x = check_input(
            x, 3, layout.replace("input_size", f"input_size={self.input_size}"), self.input_size
        )
        if not self.batch_first:
            x = x.transpose(0, 1)
        batch, T, _ = x.shape
        if T == 0:
            raise ValueError(f"x must have at least one time step (got shape {tuple(x.shape)})")
        self._check_theta_finite()
        dtype, device = compute_dtype(x.dtype), x.device
        states = self._check_state(state, batch) if state is not None else None
        in_mask, rec_mask = self.make_dropout_masks(batch, dtype, device)
        mode = self.choose_mode(T)
        self.mode = mode
        keep_all = self.config.return_sequences
        xc = x.to(dtype)
        if mode == "recurrent":
            if states is None:
                states = list(self.initial_state(batch, dtype, device))
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
