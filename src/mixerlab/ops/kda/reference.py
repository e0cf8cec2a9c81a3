"""Kimi Delta Attention as a plain loop over time steps (Kimi Linear, arXiv:2510.26692; the spec).

With the state ``S_t in R^{K x V}`` (the ``[B, H, K, V]`` layout itself) and the per-channel decay
``alpha_t = exp(g_t) in (0, 1]^K``::

    S_t = (I - beta_t k_t k_t^T) diag(alpha_t) S_{t-1} + beta_t k_t v_t^T,      o_t = S_t^T q_t

Shapes: ``q, k, g: [B, T, H, K]``, ``v: [B, T, H, V]``, ``beta: [B, T, H]``, state ``[B, H, K, V]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def kda_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    *,
    state: Tensor | None = None,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Returns ``(o: [B, T, H, V], final state: [B, H, K, V])``; ``q`` is multiplied by ``scale``."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K**-0.5 if scale is None else scale
    S = q.new_zeros(B, H, K, V) if state is None else state
    eye = torch.eye(K, dtype=q.dtype, device=q.device)
    outs = []
    for t in range(T):
        kt, bt = k[:, t], beta[:, t, :, None, None]
        householder = eye - bt * torch.einsum("bhi,bhj->bhij", kt, kt)  # [B, H, K, K]
        S = householder @ (torch.exp(g[:, t])[..., None] * S)
        S = S + bt * torch.einsum("bhk,bhv->bhkv", kt, v[:, t])
        outs.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t] * scale))
    return torch.stack(outs, dim=1), S
