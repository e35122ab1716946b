"""A simple-RNN recurrence over precomputed input projections, with a batched backward.

``h_t = act(p_t + h_{t-1} R)`` for all t.  Autograd through a Python step loop accumulates the
gradient of ``R`` once per step; here the backward loop only propagates ``dh`` (one small
matmul per step) and ``dR`` is one large matmul over all steps at the end.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

__all__ = ["SUPPORTED", "simple_rnn_sequence"]

#: Activations whose derivative is a function of the output (so only outputs are saved).
SUPPORTED = ("tanh", "relu", "linear", "sigmoid")


def _activate(name: str, v: torch.Tensor) -> torch.Tensor:
    if name == "tanh":
        return torch.tanh_(v)
    if name == "relu":
        return torch.relu_(v)
    if name == "sigmoid":
        return torch.sigmoid_(v)
    return v


def _derivative(name: str, h: torch.Tensor) -> torch.Tensor:
    if name == "tanh":
        return 1.0 - h * h
    if name == "relu":
        return (h > 0).to(h.dtype)
    if name == "sigmoid":
        return h * (1.0 - h)
    return torch.ones_like(h)


class _SimpleRNN(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, P: torch.Tensor, h0: torch.Tensor, R: torch.Tensor, act: str
    ) -> torch.Tensor:
        Pt = P.transpose(0, 1).contiguous()  # (T, batch, k)
        T = Pt.shape[0]
        hs = torch.empty(Pt.shape, dtype=P.dtype, device=P.device)
        h = h0
        for t in range(T):
            h = _activate(act, torch.addmm(Pt[t], h, R))
            hs[t] = h
        ctx.save_for_backward(hs, h0, R)
        ctx.act = act
        return hs.transpose(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        hs, h0, R = ctx.saved_tensors
        gt = grad.transpose(0, 1).contiguous()
        T = hs.shape[0]
        dA = torch.empty_like(hs)
        dh = torch.zeros_like(h0)
        Rt = R.T
        for t in range(T - 1, -1, -1):
            da = (dh + gt[t]) * _derivative(ctx.act, hs[t])
            dA[t] = da
            dh = da @ Rt
        k = hs.shape[-1]
        prev = torch.cat([h0[None], hs[:-1]], dim=0).reshape(-1, k)
        dR = prev.T @ dA.reshape(-1, k) if ctx.needs_input_grad[2] else None
        return dA.transpose(0, 1), dh, dR, None


def simple_rnn_sequence(
    P: torch.Tensor, h0: torch.Tensor, R: torch.Tensor, activation: str
) -> torch.Tensor:
    """All outputs of ``h_t = act(P[:, t] + h_{t-1} @ R)``.

    Parameters
    ----------
    P : Tensor, shape (batch, T, k)
        Input projections, biases included.
    h0 : Tensor, shape (batch, k)
    R : Tensor, shape (k, k)
        The recurrent weight in ``h @ R`` layout (torch's ``weight_hh.T``).
    activation : {"tanh", "relu", "linear", "sigmoid"}

    Returns
    -------
    Tensor, shape (batch, T, k)
    """
    if activation not in SUPPORTED:
        raise ValueError(f"activation must be one of {SUPPORTED} (got {activation!r})")
    return _SimpleRNN.apply(P, h0, R, activation)
