"""One chunk of the selective scan with a hand-written backward, for decays ``exp(dt A)`` above the floor.

When no per-step ``log a = dt A`` reaches the floor, the block-local log-decay is
``L_t = A * cumsum(dt)_t`` (see :mod:`.scan` for the blocked scan and its exponent bounds). The
forward saves only the chunk's inputs; the backward recomputes the states and runs the adjoint
recurrence ``g_t = u_t + a_{t+1} g_{t+1}`` (``u_t = dy_t C_t``) with the same blocks reversed::

    g_t = (sum_{s>=t in block} grow_s u_s + grow_last c_k) / grow_t,   c_{k-1} = a_{k,0} g_{k,0}

(``grow_t = P_t / exp(m)``, ``c_k`` the adjoint entering block ``k`` from the right), then
``dw = g`` and ``d log a = g * (h_t - w_t)``. Compared with autograd over the same forward and
activation checkpointing, this is about half the passes over ``[B, T, E, N]``.

Shapes: ``x, dt, dy: [B, L, E]`` with ``L`` a multiple of ``c = block_size``; ``A: [E, N]``;
``B, C: [B, L, N]``; ``h0: [B, E, N]``; blocks ``[B, K, c, E, N]``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

_BLOCKS = "b (k c) ... -> b k c ..."


def _tri(c: int, ref: Tensor, upper: bool) -> Tensor:
    ones = torch.ones(c, c, dtype=ref.dtype, device=ref.device)
    return ones.triu() if upper else ones.tril()


def _cumsum(tri: Tensor, v: Tensor) -> Tensor:
    """Sum over dim 2 of ``v: [B, K, c, E, N]`` weighted by the ``[c, c]`` triangle ``tri``."""
    return torch.matmul(tri, v.flatten(3)).view_as(v)


def _forward(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, h0: Tensor, c: int):
    """States ``[B, K, c, E, N]`` and the pieces the backward reuses."""
    tril = _tri(c, x, upper=False)
    dt_b = rearrange(dt, _BLOCKS, c=c)  # [B, K, c, E]
    L_mid = torch.matmul(tril - 0.5, dt_b)[..., None] * A  # log P_t - m
    grow = torch.exp(L_mid)
    w = rearrange(dt * x, _BLOCKS, c=c)[..., None] * rearrange(B, _BLOCKS, c=c)[..., None, :]
    acc = _cumsum(tril, w / grow)
    mid = L_mid[:, :, -1]  # [B, K, E, N]
    P_last, local_last = torch.exp(2 * mid), grow[:, :, -1] * acc[:, :, -1]
    h, starts = h0, []
    for P_k, local_k in zip(P_last.unbind(1), local_last.unbind(1)):
        starts.append(h)
        h = P_k * h + local_k
    start = torch.stack(starts, dim=1)  # [B, K, E, N]
    states = grow * (acc + (torch.exp(mid) * start)[:, :, None])
    return states, grow, w, dt_b, h


class SeparableChunk(torch.autograd.Function):
    """``(y [B, L, E], h [B, E, N])`` of one chunk; saves only its inputs for the backward."""

    @staticmethod
    def forward(
        ctx, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, h0: Tensor, block_size: int
    ) -> tuple[Tensor, Tensor]:
        states, _, _, _, h = _forward(x, dt, A, B, h0, block_size)
        y = torch.einsum("bkcen,bkcn->bkce", states, rearrange(C, _BLOCKS, c=block_size))
        ctx.save_for_backward(x, dt, A, B, C, h0)
        ctx.block_size = block_size
        return rearrange(y, "b k c e -> b (k c) e"), h

    @staticmethod
    def backward(ctx, dy: Tensor, dh: Tensor | None) -> tuple[Tensor | None, ...]:
        x, dt, A, B, C, h0 = ctx.saved_tensors
        c = ctx.block_size
        states, grow, w, dt_b, _ = _forward(x, dt, A, B, h0, c)
        dy_b = rearrange(dy, _BLOCKS, c=c)  # [B, K, c, E]
        C_b = rearrange(C, _BLOCKS, c=c)
        q = _cumsum(_tri(c, x, upper=True), grow * (dy_b[..., None] * C_b[..., None, :]))
        # adjoint entering each block from the right, carried from the last block back
        first_decay = torch.exp(dt_b[:, :, 0, :, None] * A) / grow[:, :, 0]  # a_{k,0} / grow_{k,0}
        carry = torch.zeros_like(h0) if dh is None else dh
        carries = []
        for k in range(q.shape[1] - 1, -1, -1):
            carries.append(carry)
            carry = first_decay[:, k] * (q[:, k, 0] + grow[:, k, -1] * carry)
        dh0 = carry
        into = torch.stack(carries[::-1], dim=1)  # [B, K, E, N]
        g = (q + (grow[:, :, -1] * into)[:, :, None]) / grow  # dL/dh_t
        B_b = rearrange(B, _BLOCKS, c=c)
        d_dtx = torch.einsum("bkcen,bkcn->bkce", g, B_b)
        dB = torch.einsum("bkcen,bkce->bkcn", g, rearrange(dt * x, _BLOCKS, c=c))
        dC = torch.einsum("bkce,bkcen->bkcn", dy_b, states)
        d_log_a = g * (states - w)  # a_t h_{t-1} = h_t - w_t
        d_dt = torch.einsum("bkcen,en->bkce", d_log_a, A)
        dA = torch.einsum("bkcen,bkce->en", d_log_a, dt_b)
        flat = "b k c ... -> b (k c) ..."
        d_dtx, d_dt = rearrange(d_dtx, flat), rearrange(d_dt, flat)
        dx = d_dtx * dt
        ddt = d_dtx * x + d_dt
        return dx, ddt, dA, rearrange(dB, flat), rearrange(dC, flat), dh0, None
