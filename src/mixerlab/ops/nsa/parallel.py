"""Native Sparse Attention for all queries at once (see :mod:`.reference`).

Compressed branch: the complete blocks ``[B, N, H, K]`` from one reshape and contraction, scores
``[B, H, Tq, N]`` masked to the blocks complete at each query. Selected branch: ``topk`` over the
same scores restricted to earlier blocks, expanded to a key mask ``[B, H, Tq, Tk]`` for one SDPA
call (the paper's kernel gathers the selected blocks; on a CPU the masked dense call is the fast
form). Window branch: :func:`mixerlab.ops.attention.attention_parallel` with its window.
Shapes as in the reference.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor
from torch.nn.functional import scaled_dot_product_attention

from mixerlab.ops.attention import attention_parallel


def nsa_parallel(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    gates: Tensor,
    compress_k: Tensor,
    compress_v: Tensor,
    *,
    block_size: int,
    num_selected: int,
    window: int,
) -> Tensor:
    B, Tq, H, K = q.shape
    Tk, l, device = k.shape[1], block_size, q.device
    pos = torch.arange(Tk - Tq, Tk, device=device)
    key_pos = torch.arange(Tk, device=device)
    own = pos // l
    mask = (key_pos[None, :] // l == own[:, None]) & (key_pos[None, :] <= pos[:, None])  # [Tq, Tk]
    mask = mask.expand(B, H, Tq, Tk)
    o_cmp = q.new_zeros(B, Tq, H, v.shape[-1])
    N = Tk // l
    if N > 0:
        kb, vb = (rearrange(t[:, : N * l], "b (n l) h k -> b n l h k", l=l) for t in (k, v))
        kc = torch.einsum("bnlhk,hl->bnhk", kb, compress_k)
        vc = torch.einsum("bnlhk,hl->bnhk", vb, compress_v)
        scores = torch.einsum("bthk,bnhk->bhtn", q, kc) / math.sqrt(K)
        visible = torch.arange(N, device=device)[None, :] < ((pos + 1) // l)[:, None]  # [Tq, N]
        # rows with no complete block read nothing (0, not a softmax over an empty set)
        any_visible = visible.any(-1, keepdim=True)
        filled = scores.masked_fill(~visible, float("-inf")).masked_fill(~any_visible, 0.0)
        weights = torch.softmax(filled, dim=-1) * any_visible
        o_cmp = torch.einsum("bhtn,bnhv->bthv", weights, vc)
        # the last query (position Tk - 1) has the most earlier blocks; from shapes, not read
        # back from ``own``, so torch.compile captures one graph
        chosen = min(num_selected, (Tk - 1) // l) if Tq > 0 else 0
        if chosen > 0:
            earlier = torch.arange(N, device=device)[None, :] < own[:, None]
            wide = torch.promote_types(q.dtype, torch.float32)  # a bfloat16 ranking flips near-ties
            ranks = torch.einsum("bthk,bnhk->bhtn", q.to(wide), kc.to(wide)).masked_fill(
                ~earlier, float("-inf")
            )
            index = ranks.topk(chosen, dim=-1).indices
            selected = torch.zeros_like(ranks, dtype=torch.bool).scatter_(-1, index, True) & earlier
            key_block = key_pos // l
            by_key = selected[..., key_block.clamp_max(N - 1)] & (key_block < N)
            mask = mask | by_key
    qh, kh, vh = (rearrange(t, "b t h k -> b h t k") for t in (q, k, v))
    o_slc = rearrange(scaled_dot_product_attention(qh, kh, vh, attn_mask=mask), "b h t v -> b t h v")
    o_win = attention_parallel(q, k, v, window=window)
    return gates[..., :1] * o_cmp + gates[..., 1:2] * o_slc + gates[..., 2:] * o_win
