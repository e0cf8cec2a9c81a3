"""PaTH attention as a per-query loop in its decoding form (arXiv:2505.16381; the spec).

Between key position ``i`` and query position ``t`` the key passes through the data-dependent
transforms ``H_s = I - beta_s w_s w_s^T`` of every later position::

    score(t, i) = q_t^T H_t H_{t-1} ... H_{i+1} k_i / sqrt(K),     o_t = sum_{i<=t} softmax_i(score) v_i

The decoding form keeps every cached key already transformed up to the last position: at step
``t`` each cached key is multiplied by ``H_t`` (a rank-one update), then ``k_t`` joins the cache
as it is. Shapes: ``q, k, w: [B, T, H, K]`` (``w`` unit-norm), ``v: [B, T, H, V]``,
``beta: [B, T, H]``; caches ``k_cache: [B, S, H, K]`` (transformed), ``v_cache: [B, S, H, V]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def path_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    w: Tensor,
    beta: Tensor,
    k_cache: Tensor,
    v_cache: Tensor,
    *,
    scale: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns ``(o: [B, T, H, V], transformed keys: [B, S+T, H, K], values: [B, S+T, H, V])``."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    keys, values = k_cache, v_cache
    outs = []
    for t in range(q.shape[1]):
        wt, bt = w[:, t, None], beta[:, t, None, :, None]  # [B, 1, H, K], [B, 1, H, 1]
        keys = keys - bt * (keys * wt).sum(-1, keepdim=True) * wt  # H_t applied to every cached key
        keys = torch.cat([keys, k[:, t, None]], dim=1)
        values = torch.cat([values, v[:, t, None]], dim=1)
        weights = torch.softmax(torch.einsum("bhk,bshk->bhs", q[:, t], keys) * scale, dim=-1)
        outs.append(torch.einsum("bhs,bshv->bhv", weights, values))
    return torch.stack(outs, dim=1), keys, values
