"""Shifted sparse attention with sinks for all queries at once: one masked SDPA call.

The reference's readable sets (:mod:`.reference`) as a boolean ``[H, Tq, Tk]`` mask (the group
of each position per head, shifted for the second half of the heads, plus the sink columns and
causality). LongLoRA computes the groups as a reshape of each head half into ``[B * T / g, g]``
batches; a mask keeps cached prefixes and odd lengths exact at the cost of O(T^2) work, which is
the CPU form here. Shapes as in the reference.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor
from torch.nn.functional import scaled_dot_product_attention


def s2_groups(positions: Tensor, num_heads: int, group_size: int) -> Tensor:
    """``[H, T]``: each position's group per head (the second half of the heads shifted by g / 2)."""
    shift = torch.where(
        torch.arange(num_heads, device=positions.device) >= num_heads // 2, group_size // 2, 0
    )
    return (positions[None, :] + shift[:, None]) // group_size


def s2_attention_parallel(q: Tensor, k: Tensor, v: Tensor, *, group_size: int, num_sinks: int) -> Tensor:
    Tq, H = q.shape[1], q.shape[2]
    Tk, G = k.shape[1], k.shape[2]
    keys = torch.arange(Tk, device=q.device)
    groups = s2_groups(keys, H, group_size)  # [H, Tk]
    same = groups[:, Tk - Tq :, None] == groups[:, None, :]  # [H, Tq, Tk]
    causal = keys[None, :] <= keys[Tk - Tq :, None]
    mask = (same | (keys < num_sinks)[None, None, :]) & causal
    qh, kh, vh = (rearrange(t, "b t h k -> b h t k") for t in (q, k, v))
    o = scaled_dot_product_attention(qh, kh, vh, attn_mask=mask[None], enable_gqa=H != G)
    return rearrange(o, "b h t v -> b t h v")
