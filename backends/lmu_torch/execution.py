"""How a forward call runs: the step loop, the parallel modes, the projected hidden input.

See :mod:`lmu_torch.layers` for the modes.  Every function takes the layer (for its weights
and cached system) and inputs already in the compute dtype.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as nnf

import lmu.system

from . import fused
from .base import LMUBase
from .convolution import conv_fft, conv_last, conv_raw, fft_length
from .discrete import free_response
from .fused import fused_recurrence
from .hidden import NeutralHidden
from .recurrence import SCAN_ACTIVATIONS, conv_projected_fft, simple_rnn_scan

__all__ = ["check_input", "memory_context", "run_parallel", "run_recurrent"]


def memory_context(device_type: str) -> contextlib.AbstractContextManager[Any]:
    """Autocast off for the memory math (it stays in float32 or float64)."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def check_input(x: Any, ndim: int, layout: str, features: int) -> torch.Tensor:
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
    ctx = memory_context(device.type)
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
    # one step (streaming) is cheaper as the plain loop than as one chunk
    if x.shape[1] > 1 and _can_fuse(layer, module, Ad, Bd, kh, in_mask, rec_mask, x):
        return _run_fused(layer, module, x, xp, kh, rk, Ad, Bd, states, keep_all)
    T = x.shape[1]
    gx_steps: Sequence[torch.Tensor | None] = [None] * T
    Wm = None
    if neutral:
        W, b = module.projection()
        Wm = W[:, : layer.memory_size].T
        if c.input_to_hidden:
            gx = torch.nn.functional.linear(x.to(W.dtype), W[:, layer.memory_size :], b)
            gx_steps = gx.unbind(1)
        else:
            gx_steps = [b] * T
    # One matmul for everything the previous hidden output feeds (memory input, own gates).
    h_weights = []
    if kh is not None:
        h_weights.append(kh)
    if neutral and module.stateful:
        h_weights.append(module.recurrent_weight().T.to(dtype))
    h_cat = torch.cat(h_weights, dim=1) if len(h_weights) > 1 else None
    # ... and one for what the previous memory feeds (itself, and the memory input), when the
    # memory matrices are shared and no recurrent dropout splits the feedback.
    fuse_m = rk is not None and Ad.shape[0] == 1 and rec_mask is None and c.memory_d == 1
    m_cat = torch.cat([Ad[0].T, rk], dim=1) if fuse_m else None
    # With a neutral hidden cell the new memory also feeds the cell's input projection: one
    # matmul gives that and the next step's memory terms together.
    carry = (
        m_cat is not None
        and neutral
        and Wm is not None
        and Wm.dtype == dtype
        and not torch.is_autocast_enabled(device.type)
    )
    big = torch.cat([m_cat, Wm], dim=1) if carry else None
    m = states[0].to(dtype)
    pre = m @ m_cat if carry else None
    h = list(states[1:])
    outs = []
    out = m
    xs = x.unbind(1) if (c.input_to_hidden and not neutral) else [None] * T
    for xp_t, gx_t, x_t in zip(xp.unbind(1), gx_steps, xs, strict=True):
        gh = None
        with ctx:
            u = xp_t
            if c.hidden_to_memory:
                hin = h[0].to(dtype)
                if in_mask is not None:
                    hin = hin * in_mask[:, n_in:]
                if h_cat is not None and in_mask is None:
                    both = hin @ h_cat
                    u = u + both[:, : c.memory_d]
                    gh = both[:, c.memory_d :]
                elif kh is not None:
                    u = u + hin @ kh
                else:
                    u = torch.cat([u, hin], dim=1)
            if m_cat is not None:
                both = pre if pre is not None else m @ m_cat
                u = u + both[:, layer.memory_size :]
                m = both[:, : layer.memory_size] + u * Bd
            else:
                if rk is not None:
                    u = u + (m * rec_mask if rec_mask is not None else m) @ rk
                m = layer.memory_step(m, u, Ad, Bd)
        if hidden is None:  # the output is the memory, or [m_t, x_t] (keras-lmu)
            out = torch.cat([m, x_t], dim=1) if c.input_to_hidden else m
        elif big is not None:
            z = m @ big
            pre = z[:, : layer.memory_size + 1]
            gi = z[:, layer.memory_size + 1 :]
            if gx_t is not None:
                gi = gi + gx_t
            out, h = module.step_projected(gi, h, gh)
        elif neutral:
            gi = m.to(Wm.dtype) @ Wm
            if gx_t is not None:
                gi = gi + gx_t
            out, h = module.step_projected(gi, h, gh)
        else:
            inp = torch.cat([m, x_t], dim=1) if c.input_to_hidden else m
            out, h = hidden.step(inp, h)
        if keep_all:
            outs.append(out)
    return (torch.stack(outs, dim=1) if keep_all else out), [m, *h]


def _can_fuse(
    layer: LMUBase,
    module: Any,
    Ad: torch.Tensor,
    Bd: torch.Tensor,
    kh: torch.Tensor | None,
    in_mask: torch.Tensor | None,
    rec_mask: torch.Tensor | None,
    x: torch.Tensor,
) -> bool:
    """Whether :func:`fused_recurrence` covers this call (see :mod:`lmu_torch.fused`)."""
    c = layer.config
    if not (isinstance(module, NeutralHidden) and module.kind in ("simple_rnn", "dense")):
        return False
    W, _ = module.projection()
    return (
        module.activation in SCAN_ACTIVATIONS
        and c.memory_d == 1
        and Ad.shape[0] == 1
        and in_mask is None
        and rec_mask is None
        and not (c.hidden_to_memory and kh is None)
        and not (Ad.requires_grad or Bd.requires_grad)
        and W.dtype == x.dtype
        and not torch.is_autocast_enabled(x.device.type)
        and not torch.compiler.is_compiling()
    )


def _run_fused(
    layer: LMUBase,
    module: NeutralHidden,
    x: torch.Tensor,
    xp: torch.Tensor,
    kh: torch.Tensor | None,
    rk: torch.Tensor | None,
    Ad: torch.Tensor,
    Bd: torch.Tensor,
    states: Sequence[torch.Tensor],
    keep_all: bool,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The step loop through :func:`fused_recurrence` (time-first inside)."""
    N = layer.memory_size
    W, b_ih = module.projection()
    if module.kind == "simple_rnn":
        U = module.recurrent_weight().t()
        b_hh = module.rnn.bias_hh_l0
    else:
        U = b_hh = None
    b = b_ih if b_hh is None else (b_hh if b_ih is None else b_ih + b_hh)
    i2h = layer.config.input_to_hidden
    m0 = states[0].to(x.dtype)
    h0 = states[1].to(x.dtype)
    # the chunk matrices, kept while A, B, r and W_m are unchanged (a streaming or inference
    # loop calls with the same weights; a training step's update makes a new key)
    Wm = W[:, :N].t()
    key = fused.plan_key(x.shape[1], Ad[0], Bd[0], rk, Wm)
    cached = layer._fused_plan
    if key is None or cached is None or cached[0] != key:
        cached = (key, fused.make_plan(x.shape[1], Ad[0], Bd[0], rk, Wm))
        layer._fused_plan = cached
    out, m_T = fused_recurrence(
        xp.transpose(0, 1),
        x.transpose(0, 1) if i2h else None,
        W[:, N:] if i2h else None,
        b,
        m0,
        h0,
        Ad[0],
        Bd[0],
        rk,
        kh,
        Wm,
        U,
        module.activation,
        keep_all,
        cached[1],
    )
    if keep_all:
        return out.transpose(0, 1), [m_T, out[-1]]
    return out, [m_T, out]


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
    project = _use_projection(layer, mode, keep_all, dtype, device)
    with memory_context(device.type):
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
        elif project:
            return _run_projected(layer, x, u, H, states, mode, keep_all)
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
    if hidden is None:  # the output is the memory, or [m_t, x_t] (keras-lmu)
        if keep_all:
            out = torch.cat([mseq, x], dim=2) if c.input_to_hidden else mseq
        else:
            out = torch.cat([m_last, x[:, -1]], dim=1) if c.input_to_hidden else m_last
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


def _use_projection(
    layer: LMUBase, mode: str, keep_all: bool, dtype: torch.dtype, device: torch.device
) -> bool:
    """Whether to convolve the input with the hidden-projected impulse response instead."""
    module = layer.hidden_cell
    if not isinstance(module, NeutralHidden) or mode not in ("fft", "raw"):
        return False
    if not (module.stateful or keep_all):
        return False
    W, _ = module.projection()
    if W.dtype != dtype or torch.is_autocast_enabled(device.type):
        return False
    # torch's fused recurrent kernels beat a Python step loop on accelerators
    return not (device.type != "cpu" and module.fused and module.stateful)


def _run_projected(
    layer: LMUBase,
    x: torch.Tensor,
    u: torch.Tensor,
    H: torch.Tensor,
    states: Sequence[torch.Tensor] | None,
    mode: str,
    keep_all: bool,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A neutral hidden cell over a linear memory, without materialising the memory sequence.

    The hidden cell only sees the memory through its input weight: ``m_t W_m^T`` equals the
    input convolved with ``G = H W_m^T``, an impulse response of width gates * units instead of
    memory_d * order.  The final memory, needed for the state, is one contraction.
    """
    c = layer.config
    md, order = c.memory_d, c.order
    batch, T, _ = x.shape
    dtype, device = x.dtype, x.device
    module = layer.hidden_cell
    assert isinstance(module, NeutralHidden)
    W, b = module.projection()
    Wt = W[:, : layer.memory_size].T  # (md * order, k)
    K = T if mode == "fft" else _truncated_length(layer, H)
    G = torch.matmul(H[:, :K], Wt.reshape(md, order, -1))  # (md, K, k)
    scan = module.kind == "simple_rnn" and module.activation in SCAN_ACTIVATIONS
    bias = b
    if scan:  # the recurrent bias joins the input bias: one addition fewer per element
        b_hh = module._weights()[3]
        bias = b_hh if bias is None else bias + b_hh
    # gi_t: time first, (T, batch, k), the layout the step loop reads
    i2h = c.input_to_hidden
    Wx = W[:, layer.memory_size :].T if i2h else None
    if mode == "fft":  # the x projection joins the convolution's output block by block
        gi_t = conv_projected_fft(u, G, bias, fft_length(T + K - 1), x if i2h else None, Wx)
        i2h = False
    else:
        weight = G.flip(1).permute(2, 0, 1)  # (k, md, K)
        gi_t = nnf.conv1d(nnf.pad(u.transpose(1, 2), (K - 1, 0)), weight).permute(2, 0, 1)
        if bias is not None:
            gi_t = gi_t + bias
    m3 = conv_last(u, H)
    if states is not None:
        m0 = states[0].to(dtype).reshape(batch, md, order)
        Ad, _ = layer.matrices(dtype, device)
        gi_t = gi_t + (free_response(Ad, m0, T).reshape(batch, T, -1) @ Wt).transpose(0, 1)
        P = layer.power(T, dtype, device).expand(md, -1, -1)
        m3 = m3 + torch.einsum("bdj,dij->bdi", m0, P)
    m_last = m3.reshape(batch, md * order)
    if i2h:
        xt = x.transpose(0, 1).reshape(T * batch, -1)
        gi_t = torch.addmm(gi_t.reshape(T * batch, -1), xt, Wx).reshape(T, batch, -1)
    h = (
        list(states[1:])
        if states is not None
        else [torch.zeros(batch, n, dtype=dtype, device=device) for n in module.state_sizes]
    )
    if scan:  # two ops per step (addmm, activation), a hand-written backward
        w_hh = module._weights()[1]
        # gi_t is this function's own: the last-output scan may run in its storage
        o = simple_rnn_scan(
            gi_t, h[0], w_hh.T, module.activation, last_only=not keep_all, consume=True
        )
        if keep_all:
            return o.transpose(0, 1), [m_last, o[-1]]
        return o, [m_last, o]
    gi = gi_t.transpose(0, 1)
    if not module.stateful:
        out = module.act(gi)
        return (out if keep_all else out[:, -1]), [m_last, out[:, -1]]
    outs = []
    for g in gi.unbind(1):
        o, h = module.step_projected(g, h)
        if keep_all:
            outs.append(o)
    return (torch.stack(outs, dim=1) if keep_all else o), [m_last, *h]
