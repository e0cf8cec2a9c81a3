"""Gated slot attention as a plain loop over time steps (the specification).

Gated Slot Attention (arXiv:2409.07146), per head with ``m`` slots::

    K_t = diag(alpha_t) K_{t-1} + (1 - alpha_t)^T k_t           ([m, K], key slots)
    V_t = diag(alpha_t) V_{t-1} + (1 - alpha_t)^T v_t           ([m, V], value slots)
    o_t = V_t^T softmax(K_t q_t)

Shapes: ``q, k: [B, T, H, K]``, ``v: [B, T, H, V]``, ``log_alpha: [B, T, H, M]`` (``<= 0``); states
``key_slots: [B, H, M, K]``, ``value_slots: [B, H, M, V]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gsa_recurrent(
    q: Tensor, k: Tensor, v: Tensor, log_alpha: Tensor, key_slots: Tensor, value_slots: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """One step (``q, k: [B, H, K]``, ``v: [B, H, V]``, ``log_alpha: [B, H, M]``): ``(o, K_t, V_t)``."""
    alpha = log_alpha.exp()[..., None]
    write = -torch.expm1(log_alpha)[..., None]  # 1 - alpha, exact when alpha is near 1
    key_slots = alpha * key_slots + write * k[:, :, None, :]
    value_slots = alpha * value_slots + write * v[:, :, None, :]
    p = torch.softmax(torch.einsum("bhmk,bhk->bhm", key_slots, q), dim=-1)
    return torch.einsum("bhm,bhmv->bhv", p, value_slots), key_slots, value_slots


def gsa_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_alpha: Tensor,
    *,
    key_slots: Tensor | None = None,
    value_slots: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``(o: [B, T, H, V], key_slots, value_slots)`` after the last step."""
    B, T, H, K = q.shape
    M, V = log_alpha.shape[-1], v.shape[-1]
    Ks = q.new_zeros(B, H, M, K) if key_slots is None else key_slots.to(q.dtype)
    Vs = q.new_zeros(B, H, M, V) if value_slots is None else value_slots.to(q.dtype)
    outs = []
    for t in range(T):
        o, Ks, Vs = gsa_recurrent(q[:, t], k[:, t], v[:, t], log_alpha[:, t], Ks, Vs)
        outs.append(o)
    return (torch.stack(outs, dim=1) if outs else v.new_zeros(B, 0, H, V)), Ks, Vs
