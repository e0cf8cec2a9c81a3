"""Titans' neural memory, chunked form (arXiv:2501.00663, sec. 3.2: parallelising the memory's training).

Inside a chunk every gradient is taken at the same ``M_base``, so all of them come from one
batched forward/backward of the memory MLP (hand-derived below), each a rank-one
``u_s = d_s x_s^T`` per layer. Momentum and decay are linear in those gradients::

    S_t = E_t S_0 - sum_{s<=t} E_ts theta_s u_s                    E_ts = prod_{s<r<=t} eta_r
    M_t = D_t M_0 + F_t S_0 - sum_{s<=t} (D E)_ts theta_s u_s      D_ts = prod_{s<r<=t} (1 - alpha_r)

with ``E_t = E_t,-1``, ``D_t = D_t,-1``, ``F_t = sum_{j<=t} D_tj E_j``: ``[C, C]`` tables of
running products (cumulative products, not logs, so gates of exactly 0 are allowed). The memory is
read without forming any ``M_t``: ``W_t x_t = D_t W_0 x_t + F_t S_0 x_t - sum_s (D E)_ts
theta_s (x_s . x_t) d_s`` for each layer in turn (the first meets ``q_t``, the second the
hidden activations). Only chunks are walked in Python; a call that starts inside a chunk first
completes it. Shapes and state as in :mod:`mixerlab.ops.titans.reference`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixerlab.ops.titans.reference import TitansState


def _segments(T: int, pos: int, b: int) -> list[int]:
    out, first = [], b - pos
    while T > 0:
        out.append(min(first, T))
        T -= out[-1]
        first = b
    return out


def _products(gate: Tensor) -> Tensor:
    """``out[..., t, s] = prod_{s<r<=t} gate_r`` (0 above the diagonal) over the chunk with a
    leading identity step: ``gate: [B, H, C]`` -> ``[B, H, C+1, C+1]``; column 0 runs from the start."""
    g = F.pad(gate, (1, 0), value=1.0)
    C1 = g.shape[-1]
    keep = torch.ones(C1, C1, dtype=torch.bool, device=g.device).tril()
    below = keep.tril(-1)  # r > s: the factors of column s
    factors = torch.where(below, g[..., :, None], torch.ones((), dtype=g.dtype, device=g.device))
    return factors.cumprod(dim=-2).masked_fill(~keep, 0.0)


def _silu_grad(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


def _layer(
    w0: Tensor, s0: Tensor, x: Tensor, inputs: Tensor, deltas: Tensor, decay, coeff
) -> tuple[Tensor, Tensor, Tensor]:
    """One layer's read ``W_t x_t`` and its weights and momentum after the chunk.

    ``w0, s0: [B, H, O, I]``; ``x, inputs: [B, C, H, I]``; ``deltas: [B, C, H, O]`` (already
    scaled by ``theta``); ``decay = (D_t, F_t, E_t)``, each ``[B, H, C]``; ``coeff = (DE, E)``,
    each ``[B, H, C, C]`` with the row of the chunk's end at index ``-1``.
    """
    d_t, f_t, e_t = decay
    de, e = coeff
    scores = torch.einsum("bthi,bshi->bhts", x, inputs) * de
    read = (
        torch.einsum("bhoi,bthi->btho", w0, x) * d_t.transpose(1, 2)[..., None]
        + torch.einsum("bhoi,bthi->btho", s0, x) * f_t.transpose(1, 2)[..., None]
        - torch.einsum("bhts,bsho->btho", scores, deltas)
    )
    grad_sum = torch.einsum("bhs,bsho,bshi->bhoi", de[..., -1, :], deltas, inputs)
    w_end = d_t[..., -1, None, None] * w0 + f_t[..., -1, None, None] * s0 - grad_sum
    s_end = e_t[..., -1, None, None] * s0 - torch.einsum("bhs,bsho,bshi->bhoi", e[..., -1, :], deltas, inputs)
    return read, w_end, s_end


def titans_chunk(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    eta: Tensor,
    theta: Tensor,
    alpha: Tensor,
    state: TitansState,
    *,
    chunk_size: int,
) -> tuple[Tensor, TitansState]:
    """Same arguments and returns as ``titans_reference``."""
    w1, w2, s1, s2, b1, b2, pos = state
    ys, start = [], 0
    for n in _segments(q.shape[1], pos, chunk_size):
        qc, kc, vc = (t[:, start : start + n] for t in (q, k, v))
        ec, tc, ac = (t[:, start : start + n].transpose(1, 2) for t in (eta, theta, alpha))  # [B, H, C]
        e_full, d_full = _products(ec), _products(1 - ac)  # [B, H, C+1, C+1]
        e_mat, d_mat = e_full[..., 1:, 1:], d_full[..., 1:, 1:]
        e_t, d_t = e_full[..., 1:, 0], d_full[..., 1:, 0]
        f_t = torch.einsum("bhtj,bhj->bht", d_mat, e_t)
        de = d_mat @ e_mat
        # the memory's forward and backward at the base weights, for every token of the chunk
        pre = torch.einsum("bhmk,bchk->bchm", b1, kc)
        act = F.silu(pre)
        delta2 = torch.einsum("bhkm,bchm->bchk", b2, act) - vc
        delta1 = torch.einsum("bhkm,bchk->bchm", b2, delta2) * _silu_grad(pre)
        theta_c = tc.transpose(1, 2)[..., None]  # [B, C, H, 1]
        decay, coeff = (d_t, f_t, e_t), (de, e_mat)
        h1, w1_new, s1_new = _layer(w1, s1, qc, kc, delta1 * theta_c, decay, coeff)
        y, w2_new, s2_new = _layer(w2, s2, F.silu(h1), act, delta2 * theta_c, decay, coeff)
        ys.append(y)
        w1, w2, s1, s2 = w1_new, w2_new, s1_new, s2_new
        start, pos = start + n, pos + n
        if pos == chunk_size:
            b1, b2, pos = w1, w2, 0
    y = torch.cat(ys, dim=1) if ys else q.new_zeros(q.shape)
    return y, (w1, w2, s1, s2, b1, b2, pos)
