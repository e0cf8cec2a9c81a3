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
hidden activations).

Everything that depends on the gates and the inputs alone (the product tables, ``q_t . k_s``
weighted by them, the queries scaled by ``D_t`` and ``F_t``) is computed for all chunks at once;
only what depends on ``M_base`` walks the chunks, a dozen batched matrix products per chunk. A call
that starts ``pos`` tokens into a chunk is aligned by ``pos`` leading steps that change nothing
(no gradient, gates 1 and 0, left out of ``F_t``); a call that ends inside a chunk reads its state
at its last token's row. Shapes and state as in :mod:`mixerlab.ops.titans.reference`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from mixerlab.ops.titans.reference import TitansState


def _products(gate: Tensor) -> Tensor:
    """``out[..., t, s] = prod_{s<r<=t} gate_r`` (0 above the diagonal) over the chunk with a
    leading identity step: ``gate: [..., C]`` -> ``[..., C+1, C+1]``; column 0 runs from the start."""
    g = F.pad(gate, (1, 0), value=1.0)
    C1 = g.shape[-1]
    keep = torch.ones(C1, C1, dtype=torch.bool, device=g.device).tril()
    below = keep.tril(-1)  # r > s: the factors of column s
    factors = torch.where(below, g[..., :, None], torch.ones((), dtype=g.dtype, device=g.device))
    return factors.cumprod(dim=-2).masked_fill(~keep, 0.0)


def _read_and_update(
    w: Tensor, s: Tensor, x_scaled: Tensor, mixed: Tensor, deltas: Tensor, inputs: Tensor, ends: tuple
) -> tuple[Tensor, Tensor, Tensor]:
    """One layer of one chunk: its read ``W_t x_t`` for every token, and the weights and momentum
    at the chunk's end row.

    ``w, s: [N, O, I]`` (``N = B H``); ``x_scaled = [D_t x_t, F_t x_t]: [N, C, 2I]``; ``mixed:
    [N, C, C]`` is ``(x_t . inputs_s) (D E)_ts theta_s``; ``deltas: [N, C, O]``; ``inputs: [N, C,
    I]``; ``ends = (D, F, E, (D E)_s theta_s, E_s theta_s)`` at the end row, ``[N, 1, 1]`` or
    ``[N, C, 1]``.
    """
    d_end, f_end, e_end, de_theta, e_theta = ends
    read = torch.baddbmm(torch.bmm(x_scaled, torch.cat([w, s], -1).transpose(1, 2)), mixed, deltas, alpha=-1)
    w_end = torch.baddbmm(d_end * w + f_end * s, (deltas * de_theta).transpose(1, 2), inputs, alpha=-1)
    s_end = torch.baddbmm(e_end * s, (deltas * e_theta).transpose(1, 2), inputs, alpha=-1)
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
    B, T, H, K = q.shape
    if T == 0:
        return q.new_zeros(q.shape), state
    C, front = chunk_size, pos
    back = (-(front + T)) % C
    # leading steps align the call with its chunk, trailing ones fill the last chunk; neither
    # moves the memory (theta = 0) nor is read
    q, k, v = (F.pad(t, (0, 0, 0, 0, front, back)) for t in (q, k, v))
    eta = F.pad(eta, (0, 0, front, back), value=1.0)
    theta, alpha = (F.pad(t, (0, 0, front, back)) for t in (theta, alpha))
    q, k, v = (rearrange(t, "b (n c) h k -> (b h) n c k", c=C) for t in (q, k, v))
    eta, theta, alpha = (rearrange(t, "b (n c) h -> (b h) n c", c=C) for t in (eta, theta, alpha))
    N = q.shape[1]

    # gate tables of every chunk: [B H, N, C, C] and [B H, N, C]
    e_full, d_full = _products(eta), _products(1 - alpha)
    e_mat, d_mat = e_full[..., 1:, 1:], d_full[..., 1:, 1:]
    e_t, d_t = e_full[..., 1:, 0], d_full[..., 1:, 0]
    real = torch.arange(N * C, device=q.device).view(N, C) >= front
    f_t = (d_mat @ (e_t * real)[..., None]).squeeze(-1)  # the leading steps carry no S_0
    de_theta = (d_mat @ e_mat) * theta[..., None, :]  # (D E)_ts theta_s
    # the row each chunk's state is read at: its last, or the call's last token in the final chunk
    end_row = torch.full((N,), C - 1, device=q.device)
    end_row[-1] = (front + T - 1) % C
    chunks = torch.arange(N, device=q.device)
    ends = [t[:, chunks, end_row][..., None, None] for t in (d_t, f_t, e_t)]  # [B H, N, 1, 1]
    ends += [
        t[:, chunks, end_row][..., None] for t in (de_theta, e_mat * theta[..., None, :])
    ]  # [B H, N, C, 1]
    q_mixed = (q @ k.transpose(-1, -2)) * de_theta
    q_scaled = torch.cat([q * d_t[..., None], q * f_t[..., None]], -1)  # [B H, N, C, 2K]

    w1, w2, s1, s2, b1, b2 = (rearrange(t, "b h o i -> (b h) o i") for t in (w1, w2, s1, s2, b1, b2))
    # one unbind per table: indexing chunk n of each would cost a full-size zero gradient per chunk
    per_chunk = zip(
        k.unbind(1),
        v.unbind(1),
        q_scaled.unbind(1),
        q_mixed.unbind(1),
        de_theta.unbind(1),
        d_t.unbind(1),
        f_t.unbind(1),
        zip(*(t.unbind(1) for t in ends)),
    )
    ys = []
    for n, (kc, vc, qs, qm, dth, dn, fn, end) in enumerate(per_chunk):
        # the memory's forward and backward at the base weights, for every token of the chunk
        pre = torch.bmm(kc, b1.transpose(1, 2))  # [B H, C, M]
        act = F.silu(pre)
        delta2 = torch.baddbmm(vc, act, b2.transpose(1, 2), beta=-1)  # M(k) - v: [B H, C, K]
        gate = torch.sigmoid(pre)  # silu'(x) = sigmoid(x) + silu(x) (1 - sigmoid(x))
        delta1 = torch.bmm(delta2, b2) * torch.addcmul(gate, act, 1 - gate)
        h1, w1_end, s1_end = _read_and_update(w1, s1, qs, qm, delta1, kc, end)
        x2 = F.silu(h1)
        mixed = torch.bmm(x2, act.transpose(1, 2)) * dth
        x2_scaled = torch.cat([x2 * dn[..., None], x2 * fn[..., None]], -1)
        y, w2_end, s2_end = _read_and_update(w2, s2, x2_scaled, mixed, delta2, act, end)
        ys.append(y)
        w1, w2, s1, s2 = w1_end, w2_end, s1_end, s2_end
        if n < N - 1 or (front + T) % C == 0:  # a chunk completed: its end is the next base
            b1, b2 = w1, w2
    y = rearrange(torch.stack(ys, 1), "(b h) n c k -> b (n c) h k", b=B)[:, front : front + T]
    new = tuple(rearrange(t, "(b h) o i -> b h o i", b=B) for t in (w1, w2, s1, s2, b1, b2))
    return y, (*new, (pos + T) % C)
