"""PaTH attention, chunked: UT-transform products of Householders per chunk (arXiv:2505.16381).

Inside a chunk, with ``L[j, m] = beta_j w_j . w_m`` (``m < j``) and the UT system ``(I + L)``,
the paper's compact form of a product of Householders gives, for every pair in the chunk at once::

    C      = (I + L)^{-1} strict_lower(diag(beta) W K^T)        (key i's corrections, j > i)
    A[t,i] = q_t . k_i - sum_{j<=t} (q_t . w_j) C[j, i]         = q_t^T H_t ... H_{i+1} k_i
    k^_i   = k_i - sum_j C[j, i] w_j                             = H_e ... H_{i+1} k_i (to the chunk end)
    q^_t   = q_t - sum_{j<=t} (q_t . w_j) [(I + L)^{-1} diag(beta) W]_j     (q^T H_t ... H_s)
    P      = I - W^T (I + L)^{-1} diag(beta) W                   = H_e ... H_s (the whole chunk)

The loop then runs over chunks only, as the decoding form does over tokens: the cache holds every
earlier key transformed to the chunk start, a chunk's queries read it through ``q^`` and each
other through ``A``, and the cache moves on by ``P`` (one ``K x K`` product) before the chunk's
``k^`` join it. Cost ``O(T^2 K)`` for the scores plus ``O(T^2 K^2 / C)`` for moving the cache.
Shapes as in :mod:`mixerlab.ops.path.reference`; ``T`` is zero-padded to a multiple of ``C``
(a padded step has ``beta = 0``, so ``H = I``, and is dropped from the returned cache).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from mixerlab.ops.precision import widen


def path_chunk(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    w: Tensor,
    beta: Tensor,
    k_cache: Tensor,
    v_cache: Tensor,
    *,
    scale: float | None = None,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns ``(o: [B, T, H, V], transformed keys: [B, S+T, H, K], values: [B, S+T, H, V])``."""
    T, C, S = q.shape[1], chunk_size, k_cache.shape[1]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    pad = (-T) % C
    if pad:
        q, k, v, w = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (q, k, v, w))
        beta = F.pad(beta, (0, 0, 0, pad))
    q, k, v, w = (rearrange(t, "b (n c) h d -> b h n c d", c=C) for t in (q, k, v, w))
    wb = w * rearrange(beta, "b (n c) h -> b h n c", c=C)[..., None]

    idx = torch.arange(C, device=q.device)
    strict = idx[:, None] > idx[None, :]
    causal = idx[:, None] >= idx[None, :]
    system = torch.eye(C, dtype=q.dtype, device=q.device) + (wb @ w.transpose(-1, -2)) * strict
    rhs = torch.cat([(wb @ k.transpose(-1, -2)) * strict, wb], dim=-1)
    # the UT transform runs in float32 for half-precision inputs (no triangular solve on the CPU)
    sol = torch.linalg.solve_triangular(*widen(system, rhs), upper=False, unitriangular=True).to(rhs.dtype)
    corr, Twb = sol.split([C, w.shape[-1]], dim=-1)  # [.., C, C] (j, i), [.., C, K]
    qw = (q @ w.transpose(-1, -2)) * causal
    local = ((q @ k.transpose(-1, -2)) - qw @ corr).masked_fill(~causal, float("-inf"))
    k_end = k - corr.transpose(-1, -2) @ w
    q_start = q - qw @ Twb
    move = w.transpose(-1, -2) @ Twb  # [B, H, N, K, K]: P = I - move

    keys = rearrange(k_cache, "b s h k -> b h s k")
    values = rearrange(v_cache, "b s h v -> b h s v")
    outs = []
    per_chunk = zip(*(t.unbind(2) for t in (q_start, local, k_end, v, move)), strict=True)
    for q_n, local_n, k_n, v_n, move_n in per_chunk:
        scores = torch.cat([q_n @ keys.transpose(-1, -2), local_n], dim=-1) * scale
        weights = torch.softmax(scores, dim=-1)
        values = torch.cat([values, v_n], dim=-2)
        outs.append(weights @ values)
        keys = torch.cat([keys - keys @ move_n.transpose(-1, -2), k_n], dim=-2)
    o = rearrange(torch.stack(outs, dim=2), "b h n c v -> b (n c) h v")[:, :T]
    keys = rearrange(keys[..., : S + T, :], "b h s k -> b s h k")
    values = rearrange(values[..., : S + T, :], "b h s v -> b s h v")
    return o, keys, values
