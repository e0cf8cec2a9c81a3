"""Gated linear attention as a plain loop over time steps (the specification).

Shapes: ``q, k: [B, T, H, K]``, ``v: [B, T, H, V]``, ``log_decay``: ``None`` (no decay),
``[B, T, H]`` (one scalar per head and step) or ``[B, T, H, K]`` (one per key channel);
state ``S: [B, H, K, V]``.

    S_t = diag(exp(log_decay_t)) S_{t-1} + k_t^T v_t
    o_t = q_t S_t
"""

from __future__ import annotations

import torch
from torch import Tensor


def linear_attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor | None = None,
    *,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Return ``(o: [B, T, H, V], S: [B, H, K, V])``, ``S`` being the state after the last step."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(q.dtype)
    outs = []
    for t in range(T):
        if log_decay is not None:
            a = torch.exp(log_decay[:, t])
            if a.dim() == 2:  # one scalar per head
                a = a[:, :, None]
            S = a[..., None] * S
        S = S + torch.einsum("bhk,bhv->bhkv", k[:, t], v[:, t])
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    o = torch.stack(outs, dim=1) if outs else v.new_zeros(B, 0, H, V)
    return o, S
