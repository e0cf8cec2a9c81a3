"""Aaren's prefix outputs without a loop over time: a two-level blocked form of the prefix scan.

The running maximum ``m_t`` is a cumulative max, available for every ``t`` at once. Every
exponential is then taken of a non-positive number, so nothing overflows:

* within a chunk, ``exp(s_i - m_t)`` for ``i <= t`` (``m_t >= s_i``);
* each chunk ``j`` is summarised at its last maximum ``M_j``: ``Z_j = sum_{i in j} exp(s_i - M_j) [v_i, 1]``;
* chunk ``c`` receives ``R_c = sum_{j<c} exp(M_j - M_{c-1}) Z_j`` (``M`` is non-decreasing), rescaled
  to each of its positions by ``exp(M_{c-1} - m_t)``.

This is the paper's associative operator applied blockwise: O(T C V) inside chunks plus
O((T/C)^2 V) across them, with the incoming state as chunk ``-1``.

Shapes as in :mod:`mixerlab.ops.aaren.reference`.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


def aaren_scan(
    s: Tensor, v: Tensor, m0: Tensor, u0: Tensor, w0: Tensor, *, chunk_size: int = 64
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    B, T, H = s.shape
    V = v.shape[-1]
    C = chunk_size
    m = torch.maximum(torch.cummax(s, dim=1).values, m0[:, None])  # [B, T, H]
    # A column of ones carries the normaliser u alongside the weighted values w.
    va = torch.cat([v, v.new_ones(B, T, H, 1)], dim=-1)  # [B, T, H, V+1]
    pad = (-T) % C
    if pad:
        # Padding repeats the last score and maximum, so its exponents stay <= 0; it is cut below.
        s = torch.cat([s, s[:, -1:].expand(B, pad, H)], dim=1)
        m = torch.cat([m, m[:, -1:].expand(B, pad, H)], dim=1)
        va = torch.cat([va, va.new_zeros(B, pad, H, V + 1)], dim=1)
    s_c = rearrange(s, "b (n c) h -> b n c h", c=C)
    m_c = rearrange(m, "b (n c) h -> b n c h", c=C)
    va_c = rearrange(va, "b (n c) h v -> b n c h v", c=C)
    causal = torch.ones(C, C, dtype=torch.bool, device=s.device).tril()  # [t, i]: i <= t
    diff = s_c[:, :, None, :, :] - m_c[:, :, :, None, :]  # [B, n, t, i, H]
    weights = torch.exp(diff.masked_fill(~causal[None, None, :, :, None], float("-inf")))
    intra = torch.einsum("bntih,bnihv->bnthv", weights, va_c)
    ends = m_c[:, :, -1]  # [B, n, H]: M_j
    Z = torch.einsum("bnch,bnchv->bnhv", torch.exp(s_c - ends[:, :, None]), va_c)
    M_all = torch.cat([m0[:, None], ends], dim=1)  # [B, n+1, H]; index 0 is the incoming state
    Z_all = torch.cat([torch.cat([w0, u0[..., None]], dim=-1)[:, None], Z], dim=1)  # [B, n+1, H, V+1]
    n = s_c.shape[1]
    upto = torch.ones(n, n + 1, dtype=torch.bool, device=s.device).tril()  # [c, j]: j <= c
    across = M_all[:, None, :, :] - M_all[:, :n, None, :]  # [B, c, j, H]: M_j - M_{c-1}
    L = torch.exp(across.masked_fill(~upto[None, :, :, None], float("-inf")))
    R = torch.einsum("bcjh,bjhv->bchv", L, Z_all)  # [B, n, H, V+1]
    carry = torch.exp(M_all[:, :n, None, :] - m_c)  # [B, n, C, H]
    num = intra + carry[..., None] * R[:, :, None]
    num = rearrange(num, "b n c h v -> b (n c) h v")[:, :T]
    w, u = num[..., :V], num[..., V]
    return w / u[..., None], (m[:, T - 1], u[:, -1], w[:, -1])
