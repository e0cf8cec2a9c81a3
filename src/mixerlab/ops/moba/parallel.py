"""MoBA for all queries at once: block gates in one product, top-k, one masked SDPA call.

The reference's selection (:mod:`.reference`) for every query and head together: the mean key of
each complete block ``[B, N, G, K]``, gates ``[B, H, Tq, N]`` with the blocks at or after the
query's own masked out, ``topk`` over them, and a boolean ``[B, H, Tq, Tk]`` mask (selected blocks
plus the own block up to the query) given to ``scaled_dot_product_attention``. The paper's kernel
runs the selected blocks through variable-length flash attention; on a CPU the masked dense call
is the fast form (still O(T^2)). Shapes as in the reference.
"""

from __future__ import annotations

import torch
from einops import rearrange, reduce
from torch import Tensor
from torch.nn.functional import scaled_dot_product_attention


def moba_parallel(q: Tensor, k: Tensor, v: Tensor, *, block_size: int, top_k: int) -> Tensor:
    B, Tq, H, _ = q.shape
    Tk, G = k.shape[1], k.shape[2]
    device = q.device
    pos = torch.arange(Tk - Tq, Tk, device=device)  # [Tq]
    key_block = torch.arange(Tk, device=device) // block_size  # [Tk]
    own = pos // block_size  # [Tq]
    mask = (key_block[None, :] == own[:, None]) & (torch.arange(Tk, device=device)[None, :] <= pos[:, None])
    mask = mask.expand(B, H, Tq, Tk)
    full = Tk // block_size  # complete blocks; a partial last block is only ever a query's own
    # the last query (position Tk - 1) has the most earlier blocks: the count comes from shapes,
    # not from reading ``own`` back, so torch.compile captures one graph
    chosen = min(top_k, (Tk - 1) // block_size) if Tq > 0 else 0
    if chosen > 0 and full > 0:
        # gates in at least float32: a bfloat16 gate flips the choice between near-equal blocks
        wide = torch.promote_types(q.dtype, torch.float32)
        means = reduce(k[:, : full * block_size].to(wide), "b (n w) g k -> b n g k", "mean", w=block_size)
        means = means.repeat_interleave(H // G, dim=2)  # [B, N, H, K]
        gates = torch.einsum("bthk,bnhk->bhtn", q.to(wide), means)
        earlier = torch.arange(full, device=device)[None, :] < own[:, None]  # [Tq, N]
        gates = gates.masked_fill(~earlier, float("-inf"))
        index = gates.topk(chosen, dim=-1).indices  # [B, H, Tq, chosen]
        selected = torch.zeros_like(gates, dtype=torch.bool).scatter_(-1, index, True) & earlier
        # a key of a complete block is read where its block is selected
        block_of = key_block.clamp_max(full - 1)
        by_key = selected[..., block_of] & (key_block < full)
        mask = mask | by_key
    qh, kh, vh = (rearrange(t, "b t h k -> b h t k") for t in (q, k, v))
    o = scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, enable_gqa=H != G)
    return rearrange(o, "b h t v -> b t h v")
