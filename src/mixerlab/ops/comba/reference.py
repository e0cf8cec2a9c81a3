"""Comba's recurrence as a plain loop over time steps (arXiv:2506.02475; the spec).

The scalar-plus-low-rank (SPLR) transition: a scalar decay ``alpha_t = exp(g_t)`` and a rank-one
correction whose read key ``p_t`` differs from the write key ``k_t``. With the state
``S_t in R^{K x V}`` (the ``[B, H, K, V]`` layout)::

    S_t = alpha_t (I - beta_t k_t p_t^T) S_{t-1} + beta_t k_t v_t^T,      o_t = S_t^T q_t

(the layer passes the output-corrected query ``q - d p``). Shapes: ``q, k, p: [B, T, H, K]``,
``v: [B, T, H, V]``, ``beta, g: [B, T, H]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def comba_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    p: Tensor,
    beta: Tensor,
    g: Tensor,
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
        kt, bt, alpha = k[:, t], beta[:, t, :, None, None], torch.exp(g[:, t, :, None, None])
        transition = alpha * (eye - bt * torch.einsum("bhi,bhj->bhij", kt, p[:, t]))  # [B, H, K, K]
        S = transition @ S + bt * torch.einsum("bhk,bhv->bhkv", kt, v[:, t])
        outs.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t] * scale))
    return torch.stack(outs, dim=1), S
