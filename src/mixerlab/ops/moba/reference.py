"""Mixture of block attention (MoBA) as a plain loop over queries (the specification).

"MoBA: Mixture of Block Attention for Long-Context LLMs" (arXiv:2502.13189). Key positions are cut
into blocks of ``block_size`` (from position 0 of the sequence, cache included). The query at
position ``t`` (block ``b = t // block_size``) always reads its own block up to itself, and the
``top_k`` earlier blocks whose mean key scores highest against it::

    g_j = q_t . mean_{s in block j} k_s      for j < b
    S_t = own block (s <= t)  U  blocks of top_k(g)
    o_t = sum_{s in S_t} softmax_s(q_t . k_s / sqrt(K)) v_s      (one softmax over S_t)

With ``top_k >= b`` every earlier block is read and this is causal softmax attention.

Shapes: ``q: [B, Tq, H, K]``, ``k: [B, Tk, G, K]``, ``v: [B, Tk, G, V]`` (query head ``h`` reads
key/value head ``h // (H // G)``); the queries are the last ``Tq`` of the ``Tk`` positions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def moba_reference(q: Tensor, k: Tensor, v: Tensor, *, block_size: int, top_k: int) -> Tensor:
    B, Tq, H, K = q.shape
    Tk, G = k.shape[1], k.shape[2]
    group, offset, scale = H // G, Tk - Tq, 1.0 / math.sqrt(K)
    out = q.new_zeros(B, Tq, H, v.shape[-1])
    for t in range(Tq):
        pos = offset + t
        own = pos // block_size
        for h in range(H):
            keys, values = k[:, : pos + 1, h // group], v[:, : pos + 1, h // group]  # [B, S, K]
            readable = torch.zeros(B, pos + 1, dtype=torch.bool, device=q.device)
            readable[:, own * block_size :] = True
            chosen = min(top_k, own)
            if chosen > 0:
                wide = torch.promote_types(q.dtype, torch.float32)  # as the parallel form's gates
                means = torch.stack(
                    [keys[:, j * block_size : (j + 1) * block_size].to(wide).mean(1) for j in range(own)],
                    dim=1,
                )  # [B, own, K]
                gates = torch.einsum("bk,bjk->bj", q[:, t, h].to(wide), means)
                for b in range(B):
                    for j in gates[b].topk(chosen).indices.tolist():
                        readable[b, j * block_size : (j + 1) * block_size] = True
            scores = torch.einsum("bk,bsk->bs", q[:, t, h], keys) * scale
            weights = torch.softmax(scores.masked_fill(~readable, float("-inf")), dim=-1)
            out[:, t, h] = torch.einsum("bs,bsv->bv", weights, values)
    return out
