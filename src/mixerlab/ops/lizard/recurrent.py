"""One decoding step of Lizard attention (arXiv:2507.09025).

Shapes: ``q_window, q_meta: [B, H, K]`` (the new token's queries); ``k, v: [B, Tk, H, K]`` (the
meta memory, the cached window and the new token, in cache-index order, see
:mod:`mixerlab.ops.lizard.reference`); ``phi_q, phi_k, log_decay: [B, H, F]``; ``alpha, beta: [H]``;
``state: [B, H, F, K]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mixerlab.ops.linear_attention import linear_attention_recurrent
from mixerlab.ops.lizard.chunk import meta_window_attention_dense


def lizard_recurrent(
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
    state: Tensor,
) -> tuple[Tensor, Tensor]:
    """Return ``(o: [B, H, K], new_state: [B, H, F, K])``: one GLA step and one query's softmax."""
    o_gla, state = linear_attention_recurrent(phi_q, phi_k, v[:, -1], log_decay, state)
    q2 = torch.cat([q_window, q_meta], dim=-1)[:, None]
    scale = 1.0 / math.sqrt(q_window.shape[-1])
    o_swa = meta_window_attention_dense(q2, k, v, window, num_meta, scale)[:, 0]
    return alpha[:, None] * o_gla + beta[:, None] * o_swa, state
