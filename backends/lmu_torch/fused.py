r"""The step loop of a one-dimensional memory and a SimpleRNN or dense cell, hand-differentiated.

With ``hidden_to_memory`` or ``memory_to_memory`` the memory is no longer a linear filter, so
training runs the step loop.  Through autograd every step leaves about ten nodes behind, and
the backward pass adds small weight-gradient GEMMs (and their accumulation) for every step.
For the common configuration (``memory_d=1``, a neutral ``simple_rnn`` or ``dense`` cell with
tanh or relu, no dropout, fixed A and B) :func:`fused_recurrence` runs the loop with a
hand-written backward instead.  With time index t = 0 .. T-1, ``m_{-1} = m0``,
``h_{-1} = h0``:

.. math::

    u_t &= xp_t + h_{t-1} k_h + m_{t-1} r            \\
    m_t &= m_{t-1} A^T + u_t B                        \\
    h_t &= f(m_t W_m + h_{t-1} U + c_t)

(``k_h`` only with hidden_to_memory, ``r`` only with memory_to_memory, ``U`` only for a
SimpleRNN).  The forward pass does two GEMMs per step: ``h_{t-1} [k_h | U]`` and
``m_t [A^T | r | W_m]`` (the latter gives this step's hidden input and the next step's memory
terms at once).  The backward pass runs, from the last step down, with
``g_t = dL/d(pre-activation)`` and ``du_t = dL/du_t``,

.. math::

    \delta h_t &= \partial L/\partial h_t + [g_{t+1} | du_{t+1}] [U^T ; k_h^T]   \\
    g_t &= \delta h_t \odot f'(h_t)                                                \\
    \delta m_t &= [g_t | \delta m_{t+1}] [W_m^T ; A] + du_{t+1} r^T                \\
    du_t &= \delta m_t B^T

again two GEMMs per step, on a rolling row ``[g_t | du_t | dm_{t+1}]``.  ``g`` and ``du`` are
kept for every step, so that each weight gradient is afterwards one large GEMM per block of
stored steps.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .recurrence import SCAN_ACTIVATIONS, _activate_, _step_spans, _times_derivative_

__all__ = ["fused_recurrence"]


class _FusedRecurrence(torch.autograd.Function):
    """Autograd function behind :func:`fused_recurrence`."""

    @staticmethod
    def forward(ctx, xp, c, m0, h0, A, Bd, rk, kh, Wm, U, activation, keep_all):  # noqa: D102
        T, batch, _ = xp.shape
        N, units = Wm.shape
        dtype, device = xp.dtype, xp.device
        r = 1 if rk is not None else 0
        big = torch.cat([A.t()] + ([rk] if rk is not None else []) + [Wm], dim=1)
        hw = ([kh] if kh is not None else []) + ([U] if U is not None else [])
        hcat = torch.cat(hw, dim=1) if hw else None
        k = 1 if kh is not None else 0
        blocks = _step_spans(T, batch * max(N, units) * xp.element_size())
        Ms = [torch.empty(b - a, batch, N, dtype=dtype, device=device) for a, b in blocks]
        if keep_all:
            Hall = torch.empty(T, batch, units, dtype=dtype, device=device)
            Hs = [Hall[a:b] for a, b in blocks]
        else:
            Hs = [torch.empty(b - a, batch, units, dtype=dtype, device=device) for a, b in blocks]
        Bd = Bd.contiguous()
        z = m0 @ big
        h = h0
        for (a, _), M_blk, H_blk in zip(blocks, Ms, Hs, strict=True):
            for i in range(M_blk.shape[0]):
                t = a + i
                u = xp[t]
                y = h @ hcat if hcat is not None else None
                if kh is not None:
                    u = u + y[:, :1]
                if rk is not None:
                    u = u + z[:, N : N + 1]
                m = torch.addcmul(z[:, :N], u, Bd, out=M_blk[i])
                z = m @ big
                pre = torch.add(z[:, N + r :], c[t], out=H_blk[i])
                if U is not None:
                    pre.add_(y[:, k:])
                h = _activate_(pre, activation)
        ctx.activation = activation
        ctx.keep_all = keep_all
        ctx.blocks = blocks
        ctx.Ms = Ms  # intermediates: kept on ctx (an output must go through save_for_backward)
        if keep_all:
            ctx.save_for_backward(m0, h0, A, Bd, rk, kh, Wm, U, Hall)
            return Hall, Ms[-1][-1].clone()
        ctx.Hs = Hs
        ctx.save_for_backward(m0, h0, A, Bd, rk, kh, Wm, U)
        return Hs[-1][-1].clone(), Ms[-1][-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_mT):  # noqa: D102
        saved = ctx.saved_tensors
        m0, h0, A, Bd, rk, kh, Wm, U = saved[:8]
        blocks, Ms = ctx.blocks, ctx.Ms
        keep_all = ctx.keep_all
        Hs = [saved[8][a:b] for a, b in blocks] if keep_all else ctx.Hs
        batch, N = m0.shape
        units = Wm.shape[1]
        T = blocks[-1][1]
        dtype, device = m0.dtype, m0.device
        activation = ctx.activation
        # Two rolling rows [g_t | du_t | dm_{t+1}] feed the per-step GEMMs; g and du are also
        # kept for every step (G, DU) for the weight gradients.  The du slot meets a zero row
        # of W2, and starts at zero so that it is finite; dm_T starts at zero.
        width = units + 1 + N
        work = torch.zeros(2, batch, width, dtype=dtype, device=device)
        W2 = torch.cat([Wm.t(), torch.zeros(1, N, dtype=dtype, device=device), A], dim=0)
        if U is not None and kh is not None:
            W1, lo, hi = torch.cat([U.t(), kh.t()], dim=0), 0, units + 1
        elif U is not None:
            W1, lo, hi = U.t(), 0, units
        elif kh is not None:
            W1, lo, hi = kh.t(), units, units + 1
        else:
            W1, lo, hi = None, 0, 0
        rk_t = rk.t() if rk is not None else None
        if d_out is None:
            d_out = torch.zeros(
                (T, batch, units) if keep_all else (batch, units), dtype=dtype, device=device
            )
        needs = ctx.needs_input_grad
        # dL/dc_t = g_t and dL/dxp_t = du_t for every step: the weight gradients read them.
        G = torch.empty(T, batch, units, dtype=dtype, device=device)
        DU = torch.empty(T, batch, 1, dtype=dtype, device=device)
        grad_rk = torch.zeros_like(rk) if (needs[6] and rk is not None) else None
        grad_Wm = torch.zeros_like(Wm) if needs[8] else None
        grad_U = torch.zeros_like(U) if (needs[9] and U is not None) else None
        grad_kh = torch.zeros_like(kh) if (needs[7] and kh is not None) else None
        dm_first = torch.empty(batch, N, dtype=dtype, device=device)
        for j in range(len(blocks) - 1, -1, -1):
            (a, b), M_blk, H_blk = blocks[j], Ms[j], Hs[j]
            for i in range(b - a - 1, -1, -1):
                t = a + i
                row, nxt = work[t % 2], work[(t + 1) % 2]
                g = row[:, :units]
                if keep_all:
                    dh = d_out[t]
                else:
                    dh = d_out if t == T - 1 else None
                if t < T - 1 and W1 is not None:
                    if dh is None:
                        torch.mm(nxt[:, lo:hi], W1, out=g)
                    else:
                        torch.addmm(dh, nxt[:, lo:hi], W1, out=g)
                elif dh is not None:
                    g.copy_(dh)
                else:
                    g.zero_()
                G[t].copy_(_times_derivative_(g, H_blk[i], activation))
                dm = nxt[:, units + 1 :] if t > 0 else dm_first
                if t < T - 1 and rk_t is not None:
                    torch.mul(nxt[:, units : units + 1], rk_t, out=dm)
                    dm.addmm_(row, W2)
                else:
                    torch.mm(row, W2, out=dm)
                if t == T - 1 and d_mT is not None:
                    dm.add_(d_mT)
                torch.mv(dm, Bd, out=DU[t, :, 0])
                row[:, units] = DU[t, :, 0]
            # this block's share of the weight gradients: sums over its steps of
            # m_t^T g_t (Wm), m_{t-1}^T du_t (rk), h_{t-1}^T g_t (U), h_{t-1}^T du_t (kh)
            rows = (b - a) * batch
            Gb, DUb = G[a:b], DU[a:b]
            if grad_Wm is not None:
                grad_Wm.addmm_(M_blk.reshape(rows, N).t(), Gb.reshape(rows, units))
            m_prev = m0 if j == 0 else Ms[j - 1][-1]
            h_prev = h0 if j == 0 else Hs[j - 1][-1]
            for grad, first, rest, d in (
                (grad_rk, m_prev, M_blk, DUb),
                (grad_U, h_prev, H_blk, Gb),
                (grad_kh, h_prev, H_blk, DUb),
            ):
                if grad is None:
                    continue
                grad.addmm_(first.t(), d[0])
                if b - a > 1:
                    n = rest.shape[-1]
                    grad.addmm_(rest[:-1].reshape(-1, n).t(), d[1:].reshape(-1, d.shape[-1]))
        grad_m0 = grad_h0 = None
        if needs[2]:
            grad_m0 = dm_first @ A
            if rk_t is not None:
                grad_m0.addmm_(DU[0], rk_t)
        if needs[3]:
            grad_h0 = torch.zeros_like(h0)
            if U is not None:
                grad_h0.addmm_(G[0], U.t())
            if kh is not None:
                grad_h0.addmm_(DU[0], kh.t())
        grad_xp = DU if needs[0] else None
        grad_c = G if needs[1] else None
        return (
            grad_xp,
            grad_c,
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
        )


def fused_recurrence(
    xp: torch.Tensor,
    c: torch.Tensor,
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the loop of the module docstring; differentiable once.

    Parameters
    ----------
    xp : torch.Tensor
        The memory's input from x (kernel and bias applied), shape (T, batch, 1), time first.
    c : torch.Tensor
        The hidden cell's input from x plus its biases, shape (T, batch, units) (may be an
        expanded view).
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
    return _FusedRecurrence.apply(xp, c, m0, h0, A, Bd, rk, kh, Wm, U, activation, keep_all)
