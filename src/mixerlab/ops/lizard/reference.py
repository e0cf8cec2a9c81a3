"""Lizard attention as a plain loop over time steps (the specification).

"Lizard: An Efficient Linearization Framework for Large Language Models" (arXiv:2507.09025),
section 3: per head, a gated linear attention branch over the whole past and a softmax branch over
the meta memory (the first ``M`` positions, attention sinks) and the last ``W`` positions::

    S_t   = diag(a_t) S_{t-1} + phi_k(k_t)^T v_t,          o^gla_t = phi_q(q_t) S_t
    o^swa_t = sum_{s in M_t u W_t} softmax_s(score_ts) v_s
    o_t   = alpha * o^gla_t + beta * o^swa_t

with ``M_t = {s < M, s <= t}`` and ``W_t = {s >= M, t - W < s <= t}`` (a position is read once).
Keys live in *cache-index space*: ``k, v: [B, Tk, H, K]`` are the meta memory, the cached window and
the new tokens back to back, and the ``Tq`` queries are the last ``Tq`` of those positions. Scores
use ``q_window`` for window keys and ``q_meta`` for meta keys (the layer rotates them differently,
see :class:`mixerlab.layers.token_mixers.lizard.Lizard`), scaled by ``K^-1/2``.

Shapes: ``q_window, q_meta: [B, Tq, H, K]``; ``k, v: [B, Tk, H, K]``; ``phi_q, phi_k: [B, Tq, H, F]``;
``log_decay: [B, Tq, H, F]``; ``alpha, beta: [H]``; state ``S: [B, H, F, K]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def meta_window_attention_reference(
    q_window: Tensor, q_meta: Tensor, k: Tensor, v: Tensor, *, window: int, num_meta: int
) -> Tensor:
    """Softmax over the meta memory and the window, one query at a time: ``[B, Tq, H, K]``."""
    B, Tq, H, K = q_window.shape
    Tk = k.shape[1]
    scale = 1.0 / math.sqrt(K)
    outs = []
    for t in range(Tq):
        pos = Tk - Tq + t
        meta = list(range(min(num_meta, pos + 1)))
        recent = list(range(max(num_meta, pos - window + 1), pos + 1))
        scores = torch.cat(
            [
                torch.einsum("bhk,bshk->bhs", q_meta[:, t], k[:, meta]),
                torch.einsum("bhk,bshk->bhs", q_window[:, t], k[:, recent]),
            ],
            dim=-1,
        )
        weights = torch.softmax(scores * scale, dim=-1)
        outs.append(torch.einsum("bhs,bshv->bhv", weights, v[:, meta + recent]))
    return torch.stack(outs, dim=1) if outs else v.new_zeros(B, 0, H, v.shape[-1])


def lizard_reference(
    q_window: Tensor,
    q_meta: Tensor,
    k: Tensor,
    v: Tensor,
    phi_q: Tensor,
    phi_k: Tensor,
    log_decay: Tensor,
    alpha: Tensor,
    beta: Tensor,
    *,
    window: int,
    num_meta: int,
    initial_state: Tensor,
) -> tuple[Tensor, Tensor]:
    """Return ``(o: [B, Tq, H, K], S: [B, H, F, K])``, ``S`` the linear branch's state after the last step."""
    Tq, Tk = q_window.shape[1], k.shape[1]
    new_v = v[:, Tk - Tq :]
    S = initial_state
    outs = []
    for t in range(Tq):
        write = torch.einsum("bhf,bhv->bhfv", phi_k[:, t], new_v[:, t])
        S = torch.exp(log_decay[:, t])[..., None] * S + write
        outs.append(torch.einsum("bhf,bhfv->bhv", phi_q[:, t], S))
    o_gla = torch.stack(outs, dim=1) if outs else new_v.new_zeros(new_v.shape)
    o_swa = meta_window_attention_reference(q_window, q_meta, k, v, window=window, num_meta=num_meta)
    return alpha[:, None] * o_gla + beta[:, None] * o_swa, S
