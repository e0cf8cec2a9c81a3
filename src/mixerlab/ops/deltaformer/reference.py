"""DeltaFormer as a plain loop over time steps (arXiv:2505.19488; the spec).

The delta rule with a softmax kernel: each value is corrected by what the memory already returns
for its key, and the output reads the corrected values with ordinary softmax attention::

    u_t = v_t - beta_t sum_{i<t} softmax_i(k_t . k_i / sqrt(K)) u_i        (u_1 = v_1)
    o_t = sum_{i<=t} softmax_i(q_t . k_i / sqrt(K)) u_i

The state is the keys and corrected values seen so far (it grows with ``T`` like a KV cache).
Shapes: ``q, k: [B, T, H, K]``, ``v: [B, T, H, V]``, ``beta: [B, T, H]``; caches
``k_cache: [B, S, H, K]``, ``u_cache: [B, S, H, V]`` (``S`` earlier tokens, possibly 0).
"""

from __future__ import annotations

import torch
from torch import Tensor


def deltaformer_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    beta: Tensor,
    k_cache: Tensor,
    u_cache: Tensor,
    *,
    scale: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns ``(o: [B, T, H, V], keys: [B, S+T, H, K], corrected values: [B, S+T, H, V])``."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    keys, values = list(k_cache.unbind(1)), list(u_cache.unbind(1))
    outs = []
    for t in range(q.shape[1]):
        u = v[:, t]
        if keys:
            K_past, U_past = torch.stack(keys, dim=1), torch.stack(values, dim=1)  # [B, S, H, *]
            weights = torch.softmax(torch.einsum("bhk,bshk->bhs", k[:, t], K_past) * scale, dim=-1)
            u = u - beta[:, t, :, None] * torch.einsum("bhs,bshv->bhv", weights, U_past)
        keys.append(k[:, t])
        values.append(u)
        K_all, U_all = torch.stack(keys, dim=1), torch.stack(values, dim=1)
        weights = torch.softmax(torch.einsum("bhk,bshk->bhs", q[:, t], K_all) * scale, dim=-1)
        outs.append(torch.einsum("bhs,bshv->bhv", weights, U_all))
    return torch.stack(outs, dim=1), torch.stack(keys, dim=1), torch.stack(values, dim=1)
