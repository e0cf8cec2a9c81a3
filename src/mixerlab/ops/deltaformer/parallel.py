"""DeltaFormer's parallel form: one triangular solve for the corrected values (arXiv:2505.19488).

Stacking ``u_t = v_t - beta_t sum_{i<t} P[t, i] u_i`` over the new tokens, with ``P`` the
strictly causal softmax of ``k_t . k_i`` over the cached and earlier new keys, gives the unit
lower-triangular system ``(I + diag(beta) P_new) u = v - diag(beta) P_cache U_cache``: every
``u`` at once by ``torch.linalg.solve_triangular`` (``O(T^2 V)``), then ordinary causal
attention (``ops.attention``) over the keys and corrected values. Shapes as in
:mod:`mixerlab.ops.deltaformer.reference`.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from mixerlab.ops.attention import attention_parallel
from mixerlab.ops.precision import widen


def deltaformer_parallel(
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
    S, T = k_cache.shape[1], k.shape[1]
    K_all = torch.cat([k_cache, k], dim=1)
    scores = torch.einsum("bthk,bshk->bhts", k, K_all) * scale  # [B, H, T, S+T]
    # key j is readable by new token t when j < S + t (strictly earlier)
    readable = torch.arange(S + T, device=k.device)[None, :] < (S + torch.arange(T, device=k.device))[:, None]
    scores = scores.masked_fill(~readable, float("-inf"))
    # the first token with an empty cache reads nothing: a row of -inf gets weight 0, not NaN
    top = scores.amax(-1, keepdim=True).detach().clamp(min=torch.finfo(scores.dtype).min)
    weights = torch.exp(scores - top)
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=torch.finfo(scores.dtype).tiny)
    b = rearrange(beta, "b t h -> b h t")[..., None]
    rhs = rearrange(v, "b t h v -> b h t v")
    if S:
        rhs = rhs - b * (weights[..., :S] @ rearrange(u_cache, "b s h v -> b h s v"))
    system = torch.eye(T, dtype=q.dtype, device=q.device) + b * weights[..., S:]
    u = torch.linalg.solve_triangular(*widen(system, rhs), upper=False, unitriangular=True).to(rhs.dtype)
    U_all = torch.cat([u_cache, rearrange(u, "b h t v -> b t h v")], dim=1)
    return attention_parallel(q, K_all, U_all, scale=scale), K_all, U_all
