r"""The step loop of a one-dimensional memory and a SimpleRNN or dense cell, hand-differentiated.

With ``hidden_to_memory`` or ``memory_to_memory`` the memory is no longer a linear filter, so
training runs the step loop.  Through autograd every step leaves about ten nodes behind, and
the backward pass adds small weight-gradient GEMMs (and their accumulation) for every step.
For the common configuration (``memory_d=1``, a neutral ``simple_rnn`` or ``dense`` cell with
tanh or relu, no dropout, fixed A and B) :func:`fused_recurrence` runs the loop with a
hand-written backward instead.  With time index t = 0 .. T-1, ``m_{-1} = m0``,
``h_{-1} = h0`` and ``P = A^T``:

.. math::

    u_t &= xp_t + h_{t-1} k_h + m_{t-1} r            \\
    m_t &= m_{t-1} P + u_t B                          \\
    h_t &= f(m_t W_m + h_{t-1} U + c_t)

(``k_h`` only with hidden_to_memory, ``r`` only with memory_to_memory, ``U`` only for a
SimpleRNN; an absent one counts as zero).

**Chunks.**  A step-by-step loop would multiply the memory by the dense (order × order)
matrix ``P`` at every step, forward and backward.  Only ``z_t = m_t [r | W_m]`` is needed at
each step, and inside a chunk of L steps that start after ``\hat m`` (the memory before the
chunk),

.. math::

    m_{t_0+k} = \hat m P^{k+1} + \sum_{j \le k} u_{t_0+j} B P^{k-j},

so the chunk's free response ``\hat m P^{k+1} [r | W_m]`` is one GEMM for all its steps, and
the response to the chunk's own inputs is a short convolution with the vectors
``B P^i [r | W_m]`` (at most L of them).  The step loop is left with ``h_{t-1} [k_h | U]``
plus that convolution.  The term ``u_t B W_m`` of the step's own input is folded into the
weights (``u_t`` is the first column of the same product).  So one step adds its GEMM over
the hidden width to its row of the chunk's pre-activations, hands its ``u_t`` on to the
chunk's later rows (one broadcast multiply-add with the vectors above) and applies the
activation (tanh through NumPy on the CPU: :func:`lmu_torch.recurrence.tanh_array`).  The
memory after the chunk is ``[\hat m | u] [P^L ; B P^{L-1-j}]``, one more GEMM per chunk.

**Backward.**  With ``g_t = dL/d(pre-activation)``, ``\bar u_t = dL/du_t`` and
``y_t = [\bar u_t | g_t]``,

.. math::

    g_t &= (\partial L/\partial h_t + y_{t+1} [k_h | U]^T) \odot f'(h_t)            \\
    \bar m_t &= \bar m_{t+1} P^T + \bar u_{t+1} r^T + g_t W_m^T                        \\
    \bar u_t &= \bar m_t B^T.

Inside a chunk, ``\bar u_t`` is the carry from later chunks, ``\mu``, seen through
``(B P^{t_1-t})^T``, plus a short correlation of the chunk's later ``y`` with the same vectors
as the forward's convolution; the carry into the chunk before is
``\mu P^{T L} + \sum y_s [r^T P^{T(s-t_0)} ; W_m^T P^{T(s-t_0+1)}]``, one GEMM per chunk.
``P^T`` is never applied per step.  ``g`` and ``\bar u`` are the gradients of ``c`` (so of
x's kernel rows and the bias) and of ``xp``, taken chunk by chunk; ``[k_h | U]``'s gradient
is one GEMM per chunk of stored outputs against ``y``.

**The gradient of** ``[r | W_m]`` is ``\sum_t [m_{t-1}^T \bar u_t | m_t^T g_t]``.  A chunk's
memories are ``[\hat m | u] \phi`` (``\phi`` stacks ``[P^1 .. P^L]`` over the Toeplitz blocks
of ``B P^i``), so the backward pass only accumulates ``S = \sum [\hat m | u]^T y`` over the
chunks, one GEMM each, and contracts ``S`` with ``\phi`` once at the end
(:func:`_memory_weight_gradient`).  The memory sequence is never formed.

**Batch parts.**  On the CPU the loop runs as independent parts of the batch, each in a
thread of its own (:mod:`lmu_torch.parts`); the parts' shares of the weight gradients are
summed at the end.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from . import parts, workspace
from .recurrence import SCAN_ACTIVATIONS, _derivative, _step_spans, tanh_array

__all__ = ["chunk_length", "fused_recurrence", "make_plan", "plan_key"]

#: Steps per chunk.  Each step's convolution over the chunk's inputs grows with it, each
#: chunk's GEMMs shrink with it per step.
_CHUNK = 8


def chunk_length(T: int) -> int:
    """The chunk length the loop uses for T steps."""
    return max(1, min(_CHUNK, T))


class _Plan:
    """The matrices a chunk of up to L steps needs (names as in the module docstring).

    With ``K_i = B P^i`` and ``Q = [r | W_m]`` (``r = 0`` without memory_to_memory):

    * ``phi`` (N + L, L N): ``[P^1 .. P^L]`` over ``K``'s Toeplitz blocks (row j, block k:
      ``K_{k-j}`` for k >= j), so that ``[m_hat | u] phi`` are the chunk's memories.
    * ``F`` (N, L (1+n)): block k is ``[P^k r | P^{k+1} W_m]``, the free response as ``z``
      needs it (the ``r`` column one step late, as ``u_t`` reads ``m_{t-1}``); ``F_fold`` the
      same with the first column folded into the others (``+ P^k r w_0``, ``w_0 = B W_m``).
    * ``g`` (L (1+n),): block i is ``[B P^{i-1} r | B P^i W_m]`` (first entry 0), the
      chunk's response to one input; ``g_fold`` (L-1, 1+n): blocks L-1 .. 1, folded.
    * ``kT`` (N, L): ``[K_{L-1} .. K_0]``.

    ``sources`` keeps the tensors it was made from, so that a cache keyed by their storage
    (:func:`plan_key`) cannot meet another tensor at a reused address.
    """

    def __init__(
        self,
        A: torch.Tensor,
        Bd: torch.Tensor,
        rk: torch.Tensor | None,
        Wm: torch.Tensor,
        L: int,
    ) -> None:
        self.sources = (A, Bd, rk, Wm)
        self.L = L
        N, units = Wm.shape
        width = 1 + units
        P = A.t()
        powers = [torch.eye(N, dtype=Wm.dtype, device=Wm.device)]
        for _ in range(L):
            powers.append(powers[-1] @ P)
        K = torch.stack([Bd @ p for p in powers[:L]])
        r = rk[:, 0] if rk is not None else Wm.new_zeros(N)
        Kr, KW = K @ r, K @ Wm
        g = torch.cat([torch.cat([Kr.new_zeros(1), Kr[:-1]])[:, None], KW], dim=1)
        self.w0 = KW[0]
        self.g = g.reshape(-1)
        g_fold = torch.cat([g[:, :1], g[:, 1:] + g[:, :1] * self.w0], dim=1)
        self.g_fold = g_fold.flip(0)[:-1].contiguous()
        F = Wm.new_empty(N, L, width)
        for k in range(L):
            F[:, k, 0] = powers[k] @ r
            F[:, k, 1:] = powers[k + 1] @ Wm
        self.F = F.reshape(N, L * width)
        F_fold = torch.cat([F[:, :, :1], F[:, :, 1:] + F[:, :, :1] * self.w0], dim=2)
        self.F_fold = F_fold.reshape(N, L * width)
        phi = Wm.new_zeros(N + L, L, N)
        for k in range(L):
            phi[:N, k] = powers[k + 1]
            phi[N + k, k:] = K[: L - k]
        self.phi = phi.reshape(N + L, L * N)
        self.kT = K.flip(0).t().contiguous()


def _activate(pre: torch.Tensor, out: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "tanh":
        return torch.tanh(pre, out=out)
    return torch.clamp_min(pre, 0, out=out)


class _Part:
    """What the backward pass needs of one part's forward loop."""

    def __init__(
        self,
        blocks: list[tuple[int, int]],
        Hs: list[torch.Tensor],
        Us: list[torch.Tensor],
        m_hats: torch.Tensor,
        h: torch.Tensor,
    ) -> None:
        self.blocks, self.Hs, self.Us, self.m_hats, self.h = blocks, Hs, Us, m_hats, h


def _forward_part(
    xp: torch.Tensor,
    x: torch.Tensor | None,
    Wx: torch.Tensor | None,
    bc: torch.Tensor | None,
    m0: torch.Tensor,
    h0: torch.Tensor,
    plan: _Plan,
    W1_fold: torch.Tensor | None,
    activation: str,
    Hall: torch.Tensor | None,
) -> _Part:
    """The forward loop over some rows of the batch; outputs into ``Hall`` when given."""
    T, batch, _ = xp.shape
    N, L = plan.phi.shape[1] // plan.L, plan.L
    width = plan.F.shape[1] // L
    units = width - 1
    dtype, device = xp.dtype, xp.device
    # Outputs are stored with the step's product's u column in front (as f(u_t), unused),
    # so that the activation runs over one contiguous block; in storage from the pool (this
    # thread's share of the heap would otherwise be given back and faulted in on every call).
    blocks = _step_spans(T, batch * width * xp.element_size(), multiple=L)
    if Hall is not None:
        Hs = [Hall[a:b] for a, b in blocks]
    else:
        store = workspace.empty(
            T, batch, width, dtype=dtype, device=device, min_bytes=workspace.LOOP_MIN_BYTES
        )
        Hs = [store[a:b] for a, b in blocks]
    Us = [torch.empty(b - a, batch, dtype=dtype, device=device) for a, b in blocks]
    n_chunks = sum(-(-(b - a) // L) for a, b in blocks)
    m_hats = workspace.empty(
        n_chunks + 1, batch, N, dtype=dtype, device=device, min_bytes=workspace.LOOP_MIN_BYTES
    )
    m_hats[0] = m0
    zbuf = torch.empty(batch, N + L, dtype=dtype, device=device)  # [m_hat | chunk's u]
    # the chunk's pre-activations [u_t | a_t], batch first; each step completes its own row
    # in place and passes its u_t on to the later rows (the convolution with g)
    ebuf = torch.empty(batch * L * width, dtype=dtype, device=device)
    e_arr = tanh_array(ebuf, activation)
    cbuf = torch.empty(L * batch * units, dtype=dtype, device=device)
    g_up = plan.g_fold.flip(0)  # rows for lags 1 .. L-1
    views: dict[int, Any] = {}  # per chunk length: the step loop's views of the buffers

    def step_views(Lc: int) -> Any:
        if Lc not in views:
            E = ebuf[: batch * Lc * width].view(batch, Lc, width)
            arr = None if e_arr is None else e_arr[: batch * Lc * width].reshape(batch, Lc, width)
            views[Lc] = (
                E,
                E.unbind(1),
                None if arr is None else [arr[:, k] for k in range(Lc)],
                [(E[:, k + 1 :], E[:, k : k + 1, :1], g_up[: Lc - 1 - k]) for k in range(Lc - 1)],
                E[:, :, 0],
            )
        return views[Lc]

    h = h0
    chunk = 0
    for (a, b), H_blk, U_blk in zip(blocks, Hs, Us, strict=True):
        H_rows, h_rows = H_blk.unbind(0), H_blk[:, :, 1:].unbind(0)
        H_arr = tanh_array(H_blk, activation)
        for t0 in range(a, b, L):
            Lc = min(L, b - t0)
            m_hat = m_hats[chunk]
            zbuf[:, :N] = m_hat
            E, E_rows, E_arrs, passes, uc = step_views(Lc)
            torch.mm(m_hat, plan.F_fold[:, : Lc * width], out=E.view(batch, Lc * width))
            xc = xp[t0 : t0 + Lc, :, 0].t()
            E[:, :, 0] += xc
            Ec = E[:, :, 1:].addcmul_(xc[:, :, None], plan.w0)
            if x is not None:  # the cell's input from x, c_t = x_t W_x^T + b
                assert Wx is not None
                cc = cbuf[: Lc * batch * units].view(Lc * batch, units)
                xs = x[t0 : t0 + Lc].reshape(Lc * batch, -1)
                if bc is not None:
                    torch.addmm(bc, xs, Wx.t(), out=cc)
                else:
                    torch.mm(xs, Wx.t(), out=cc)
                Ec.add_(cc.view(Lc, batch, units).transpose(0, 1))
            elif bc is not None:
                Ec.add_(bc)
            for k in range(Lc):
                t = t0 - a + k
                if W1_fold is not None:
                    E_rows[k].addmm_(h, W1_fold)
                if k + 1 < Lc:  # u_t's share of the later steps of the chunk
                    later, u_t, g = passes[k]
                    later.addcmul_(u_t, g)
                if H_arr is not None and E_arrs is not None:
                    np.tanh(E_arrs[k], out=H_arr[t])
                else:
                    _activate(E_rows[k], H_rows[t], activation)
                h = h_rows[t]
            zbuf[:, N : N + Lc] = uc
            U_blk[t0 - a : t0 - a + Lc] = uc.t()
            chunk += 1
            end = plan.phi[: N + Lc, (Lc - 1) * N : Lc * N]
            torch.mm(zbuf[:, : N + Lc], end, out=m_hats[chunk])
    return _Part(blocks, Hs, Us, m_hats, h)


def _backward_part(
    part: _Part,
    Hs: list[torch.Tensor],
    H_full: list[torch.Tensor] | None,
    plan: _Plan,
    W1: torch.Tensor | None,
    x: torch.Tensor | None,
    Wx: torch.Tensor | None,
    h0: torch.Tensor,
    d_out: torch.Tensor | None,
    d_mT: torch.Tensor | None,
    keep_all: bool,
    activation: str,
    needs: tuple[bool, ...],
    grad_xp: torch.Tensor | None,
    grad_x: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, Any, Any, Any, Any]:
    """The backward loop over some rows of the batch.

    ``Hs`` are the stored outputs, blocks of (steps, rows, units); ``H_full`` the same blocks
    with the u column in front, where they are contiguous tensors of the part's own.  Writes
    the gradients of ``xp`` and ``x`` (these rows) into ``grad_xp`` and ``grad_x``; returns
    ``(mu, y_0, S, grad_W1, grad_Wx, grad_bc)``: the carry into ``m0``, ``y`` of the first
    step, and these rows' shares of the sums over the batch (None where not needed).
    """
    blocks, m_hats, L = part.blocks, part.m_hats, plan.L
    batch, units = h0.shape
    N = m_hats.shape[-1]
    width = units + 1
    T = blocks[-1][1]
    dtype, device = h0.dtype, h0.device

    def new(*shape: int) -> torch.Tensor:
        return torch.empty(*shape, dtype=dtype, device=device)

    W1T = None if W1 is None else W1.t()
    # The chunk's y = [du_t | g_t], batch first, so that one batch row's later steps are
    # one contiguous span: the correlation that gives du_t is one matrix-vector product.
    ych = torch.zeros(batch, L, width, dtype=dtype, device=device)
    yv = ych.view(batch, L * width)
    # the same, time first, for a whole storage block: the weight gradients that sum over
    # steps are one product per block rather than one per chunk
    yblk = workspace.empty(
        max(b - a for a, b in blocks),
        batch,
        width,
        dtype=dtype,
        device=device,
        min_bytes=workspace.LOOP_MIN_BYTES,
    )
    y_next = torch.zeros(batch, width, dtype=dtype, device=device)
    mu = d_mT.clone() if d_mT is not None else torch.zeros_like(m_hats[0])
    mu_next, mu_beta, D = new(batch, N), new(batch, L), new(L, batch, units)
    want_q = needs[8] or needs[10]
    want_w1 = W1 is not None and (needs[9] or needs[11])
    # sum over chunks of [m_hat | u]^T y: the chunk's memories are [m_hat | u] phi, so
    # this is all dL/d[r | W_m] needs (see _memory_weight_gradient)
    S = torch.zeros(N + L, L * width, dtype=dtype, device=device) if want_q else None
    zbuf = new(batch, N + L)
    grad_W1 = torch.zeros(units, width, dtype=dtype, device=device) if want_w1 else None
    grad_Wx = torch.zeros_like(Wx) if (Wx is not None and needs[2]) else None
    grad_bc = torch.zeros(units, dtype=dtype, device=device) if needs[3] else None
    views: dict[int, Any] = {}  # per chunk length: the step loop's views of the buffers

    def step_views(Lc: int) -> Any:
        if Lc not in views:
            rows = ych.unbind(1)
            views[Lc] = [
                (
                    rows[k + 1] if k + 1 < Lc else y_next,
                    rows[k][:, 1:],
                    D[k],
                    mu_beta[:, k],
                    yv[:, k * width + 1 : Lc * width],
                    plan.g[1 : (Lc - k) * width],
                    rows[k][:, 0],
                )
                for k in range(Lc)
            ]
        return views[Lc]

    d_rows = d_out.unbind(0) if (keep_all and d_out is not None) else None
    chunk = m_hats.shape[0] - 1
    for j in range(len(blocks) - 1, -1, -1):
        (a, b), H_blk = blocks[j], Hs[j]
        for t0 in reversed(range(a, b, L)):
            chunk -= 1
            Lc = min(L, b - t0)
            torch.mm(mu, plan.kT[:, L - Lc :], out=mu_beta[:, :Lc])
            _derivative(H_blk[t0 - a : t0 - a + Lc], activation, D[:Lc])
            ych.zero_()
            for k, (yn, g, Dk, base, later, gv, du) in reversed(list(enumerate(step_views(Lc)))):
                t = t0 + k
                if d_rows is not None:
                    dh = d_rows[t]
                else:
                    dh = d_out if (t == T - 1 and d_out is not None) else None
                if W1T is not None:
                    if dh is None:
                        torch.mm(yn, W1T, out=g)
                    else:
                        torch.addmm(dh, yn, W1T, out=g)
                elif dh is not None:
                    g.copy_(dh)
                g.mul_(Dk)
                torch.addmv(base, later, gv, out=du)
            yblk[t0 - a : t0 - a + Lc].copy_(ych[:, :Lc].transpose(0, 1))
            if S is not None:  # this chunk's share of dL/d[r | W_m]
                zbuf[:, :N] = m_hats[chunk]
                zbuf[:, N : N + Lc] = part.Us[j][t0 - a : t0 - a + Lc].t()
                S[: N + Lc, : Lc * width].addmm_(zbuf[:, : N + Lc].t(), yv[:, : Lc * width])
            y_next.copy_(ych[:, 0])
            last = plan.phi[:N, (Lc - 1) * N : Lc * N]
            torch.mm(mu, last.t(), out=mu_next)
            mu_next.addmm_(yv[:, : Lc * width], plan.F[:, : Lc * width].t())
            mu, mu_next = mu_next, mu
        # the block's share of the other gradients
        # (products read the g columns of y, and of the stored outputs where they are
        # whole blocks, as strided matrices: no copies)
        steps = b - a
        yt = yblk[:steps]
        rows = steps * batch
        G = yt.view(rows, width)[:, 1:]
        if grad_W1 is not None:  # the sum of h_{t-1}^T y_t
            grad_W1.addmm_((h0 if j == 0 else Hs[j - 1][-1]).t(), yt[0])
            if steps > 1:
                if H_full is not None:
                    prev = H_full[j][: steps - 1].view(rows - batch, width)[:, 1:]
                else:
                    prev = H_blk[: steps - 1].reshape(rows - batch, units)
                grad_W1.addmm_(prev.t(), yt[1:].view(rows - batch, width))
        if grad_xp is not None:
            grad_xp[a:b] = yt[:, :, :1]
        if grad_x is not None:
            assert Wx is not None
            grad_x[a:b] = (G @ Wx).view(steps, batch, -1)
        if grad_Wx is not None:
            assert x is not None
            grad_Wx.addmm_(G.t(), x[a:b].reshape(rows, -1))
        if grad_bc is not None:
            grad_bc += G.sum(0)
    return mu, y_next, S, grad_W1, grad_Wx, grad_bc


class _FusedRecurrence(torch.autograd.Function):
    """Autograd function behind :func:`fused_recurrence`."""

    @staticmethod
    def forward(ctx, xp, x, Wx, bc, m0, h0, A, Bd, rk, kh, Wm, U, activation, keep_all, plan):  # noqa: D102
        T, batch, _ = xp.shape
        units = Wm.shape[1]
        width = units + 1
        L = chunk_length(T)
        if plan is None or plan.L != L:
            plan = _Plan(A, Bd, rk, Wm, L)
        # [k_h | U] (zero where absent), and its fold: column 0 of a step's product is u_t,
        # whose own contribution u_t B W_m to the pre-activation joins the other columns.
        W1 = W1_fold = None
        if kh is not None or U is not None:
            W1 = Wm.new_zeros(units, width)
            if kh is not None:
                W1[:, 0] = kh[:, 0]
            if U is not None:
                W1[:, 1:] = U
            W1_fold = torch.cat([W1[:, :1], W1[:, 1:] + W1[:, :1] * plan.w0], dim=1)
        Hall = None
        if keep_all:
            Hall = workspace.empty(
                T,
                batch,
                width,
                dtype=xp.dtype,
                device=xp.device,
                min_bytes=workspace.LOOP_MIN_BYTES,
            )
        spans = parts.batch_parts(batch, xp.device)

        def run(i: int) -> _Part:
            b0, b1 = spans[i]
            return _forward_part(
                xp[:, b0:b1],
                None if x is None else x[:, b0:b1],
                Wx,
                bc,
                m0[b0:b1],
                h0[b0:b1],
                plan,
                W1_fold,
                activation,
                None if Hall is None else Hall[:, b0:b1],
            )

        states = parts.in_parts(run, len(spans))
        ctx.activation, ctx.keep_all, ctx.plan, ctx.W1 = activation, keep_all, plan, W1
        ctx.spans, ctx.parts = spans, states
        m_T = torch.cat([p.m_hats[-1] for p in states])
        if Hall is not None:
            out = Hall[:, :, 1:]
            ctx.save_for_backward(x, Wx, h0, kh, Wm, U, out)
            return out, m_T
        ctx.save_for_backward(x, Wx, h0, kh, Wm, U)
        return torch.cat([p.h for p in states]), m_T

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_mT):  # noqa: D102
        saved = ctx.saved_tensors
        x, Wx, h0, kh, Wm, U = saved[:6]
        plan, W1, keep_all, spans = ctx.plan, ctx.W1, ctx.keep_all, ctx.spans
        batch = h0.shape[0]
        N, L = Wm.shape[0], plan.L
        T = ctx.parts[0].blocks[-1][1]
        dtype, device = h0.dtype, h0.device
        needs = ctx.needs_input_grad
        grad_xp = torch.empty(T, batch, 1, dtype=dtype, device=device) if needs[0] else None
        grad_x = x.new_empty(x.shape) if needs[1] else None

        def run(i: int) -> Any:
            (b0, b1), part = spans[i], ctx.parts[i]
            if keep_all:
                Hs = [saved[6][a:b, b0:b1] for a, b in part.blocks]
                H_full, d = None, None if d_out is None else d_out[:, b0:b1]
            else:  # the part's own blocks, with the u column in front
                Hs = [H_blk[:, :, 1:] for H_blk in part.Hs]
                H_full, d = part.Hs, None if d_out is None else d_out[b0:b1]
            return _backward_part(
                part,
                Hs,
                H_full,
                plan,
                W1,
                None if x is None else x[:, b0:b1],
                Wx,
                h0[b0:b1],
                d,
                None if d_mT is None else d_mT[b0:b1],
                keep_all,
                ctx.activation,
                needs,
                None if grad_xp is None else grad_xp[:, b0:b1],
                None if grad_x is None else grad_x[:, b0:b1],
            )

        shares = parts.in_parts(run, len(spans))
        grad_m0 = torch.cat([s[0] for s in shares]) if needs[4] else None
        grad_h0 = None
        if needs[5]:
            y0 = torch.cat([s[1] for s in shares])
            grad_h0 = y0 @ W1.t() if W1 is not None else torch.zeros_like(h0)
        S, grad_W1, grad_Wx, grad_bc = (parts.total([s[i] for s in shares]) for i in range(2, 6))
        grad_rk = grad_Wm = None
        if S is not None:
            grad_rk, grad_Wm = _memory_weight_gradient(S, plan.phi, N, L)
            grad_rk = grad_rk if needs[8] else None
            grad_Wm = grad_Wm if needs[10] else None
        grad_kh = grad_U = None
        if grad_W1 is not None:
            grad_kh = grad_W1[:, :1] if (needs[9] and kh is not None) else None
            grad_U = grad_W1[:, 1:] if (needs[11] and U is not None) else None
        return (
            grad_xp,
            grad_x,
            grad_Wx,
            grad_bc,
            grad_m0,
            grad_h0,
            None,
            None,
            grad_rk,
            grad_kh,
            grad_Wm,
            grad_U,
            None,
            None,
            None,
        )


def _memory_weight_gradient(
    S: torch.Tensor, phi: torch.Tensor, N: int, L: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``dL/dr = sum_t m_{t-1}^T du_t`` and ``dL/dW_m = sum_t m_t^T g_t``, from chunk sums.

    In a chunk, ``m_{t_0+k} = Z phi_k`` with ``Z = [m_hat | u]`` and ``phi_k`` the chunk's k-th
    column block of ``phi``, and ``m_{t_0-1} = m_hat = Z [I ; 0]``.  So with
    ``S = sum_chunks Z^T y`` (rows ``[m_hat | u]``, columns ``(k, [du | g])``), the sums are
    ``sum_k phi_k^T S_k`` over the k blocks: a small contraction, however long the sequence.

    Parameters
    ----------
    S : torch.Tensor
        Shape (N + L, L (1 + units)).
    phi : torch.Tensor
        :attr:`_Plan.phi`, shape (N + L, L N).

    Returns
    -------
    grad_r, grad_Wm : torch.Tensor
        Shapes (N, 1) and (N, units).
    """
    width = S.shape[1] // L
    Sk = S.view(N + L, L, width)
    phik = phi.view(N + L, L, N)
    grad_Wm = torch.einsum("rkn,rkc->nc", phik, Sk[:, :, 1:])
    # du_t pairs with m_{t-1}: m_hat for k = 0, block k - 1 after that
    grad_r = Sk[:N, 0, :1].clone()
    if L > 1:
        grad_r += torch.einsum("rkn,rk->n", phik[:, : L - 1], Sk[:, 1:, 0])[:, None]
    return grad_r, grad_Wm


def fused_recurrence(
    xp: torch.Tensor,
    x: torch.Tensor | None,
    Wx: torch.Tensor | None,
    bc: torch.Tensor | None,
    m0: torch.Tensor,
    h0: torch.Tensor,
    A: torch.Tensor,
    Bd: torch.Tensor,
    rk: torch.Tensor | None,
    kh: torch.Tensor | None,
    Wm: torch.Tensor,
    U: torch.Tensor | None,
    activation: str,
    keep_all: bool,
    plan: _Plan | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the loop of the module docstring; differentiable once.

    Parameters
    ----------
    xp : torch.Tensor
        The memory's input from x (kernel and bias applied), shape (T, batch, 1), time first.
    x, Wx : torch.Tensor or None
        The layer's input (T, batch, input_size), time first, and the cell's kernel rows for
        it (units, input_size), with input_to_hidden; both None otherwise.
    bc : torch.Tensor or None
        The cell's bias (units,).  The cell's input from outside the loop is
        ``c_t = x_t W_x^T + b``.
    m0, h0 : torch.Tensor
        Initial memory (batch, order) and hidden output (batch, units).
    A : torch.Tensor
        Discrete state matrix (order, order); Bd (order,) its input vector.  Neither may
        require a gradient.
    rk : torch.Tensor or None
        Recurrent kernel (order, 1), with memory_to_memory.
    kh : torch.Tensor or None
        The hidden output's rows of the kernel (units, 1), with hidden_to_memory.
    Wm : torch.Tensor
        The memory's input weight into the cell (order, units).
    U : torch.Tensor or None
        The cell's recurrent weight (units, units) (``W_hh^T``), for a SimpleRNN.
    activation : {"tanh", "relu"}
    keep_all : bool
        Return every output (T, batch, units) instead of the last one (batch, units).
    plan : optional
        The chunk matrices from :func:`make_plan` for these A, Bd, rk and Wm, when the caller
        keeps them between calls (streaming, inference); made here otherwise.

    Returns
    -------
    out : torch.Tensor
    m_T : torch.Tensor
        The final memory (batch, order).
    """
    if activation not in SCAN_ACTIVATIONS:
        raise ValueError(f"activation must be one of {SCAN_ACTIVATIONS} (got {activation!r})")
    if A.requires_grad or Bd.requires_grad:
        raise ValueError("fused_recurrence needs fixed A and B (they require a gradient here)")
    if (x is None) != (Wx is None):
        given = "x" if x is not None else "Wx"
        raise ValueError(f"fused_recurrence takes x and Wx together, or neither (got only {given})")
    return _FusedRecurrence.apply(
        xp, x, Wx, bc, m0, h0, A, Bd, rk, kh, Wm, U, activation, keep_all, plan
    )


def plan_key(
    T: int, A: torch.Tensor, Bd: torch.Tensor, rk: torch.Tensor | None, Wm: torch.Tensor
) -> tuple[object, ...] | None:
    """A cache key for :func:`make_plan`'s result, or None where none is safe.

    The key holds the chunk length and each tensor's storage address, version (bumped by every
    in-place change, optimiser steps included), dtype, device, shape and strides.  A and Bd are
    the layer's cached constants; made in inference mode they carry no version, and their
    address alone identifies them (a new theta makes new tensors).  Weights made in inference
    mode carry no version either: then there is no key.
    """
    parts: list[object] = [chunk_length(T)]
    for t, constant in ((A, True), (Bd, True), (rk, False), (Wm, False)):
        if t is None:
            parts.append(None)
            continue
        if t.is_inference() and not constant:
            return None
        version = -1 if t.is_inference() else t._version
        parts.append((t.data_ptr(), version, t.dtype, t.device, t.shape, t.stride()))
    return tuple(parts)


def make_plan(
    T: int, A: torch.Tensor, Bd: torch.Tensor, rk: torch.Tensor | None, Wm: torch.Tensor
) -> _Plan:
    """The chunk matrices :func:`fused_recurrence` needs for T steps (no autograd)."""
    with torch.no_grad():
        r = rk.detach() if rk is not None else None
        return _Plan(A.detach(), Bd.detach(), r, Wm.detach(), chunk_length(T))
