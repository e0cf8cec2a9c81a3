"""Shifted sparse attention with sink tokens as a plain loop over queries (the specification).

LongLoRA's S²-Attn (arXiv:2309.12307) as extended by SinkLoRA (arXiv:2406.05678): positions are cut
into groups of ``group_size``; the first half of the heads use groups ``[0, g), [g, 2g), ...``, the
other half groups shifted by ``g / 2`` (``[-g/2, g/2), [g/2, 3g/2), ...``), so information flows
between neighbouring groups through the shifted heads. Every query also reads the first
``num_sinks`` tokens of the sequence (the global sink tokens). Causal, one softmax::

    S_t^h = {s <= t : group_h(s) == group_h(t)}  U  {s < num_sinks}
    o_t^h = sum_{s in S_t^h} softmax_s(q_t . k_s / sqrt(K)) v_s

Shapes: ``q: [B, Tq, H, K]``, ``k: [B, Tk, G, K]``, ``v: [B, Tk, G, V]`` (query head ``h`` reads
key/value head ``h // (H // G)``); the queries are the last ``Tq`` of the ``Tk`` positions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def s2_attention_reference(q: Tensor, k: Tensor, v: Tensor, *, group_size: int, num_sinks: int) -> Tensor:
    B, Tq, H, K = q.shape
    Tk, G = k.shape[1], k.shape[2]
    group, offset = H // G, Tk - Tq
    out = q.new_zeros(B, Tq, H, v.shape[-1])
    for t in range(Tq):
        pos = offset + t
        for h in range(H):
            shift = group_size // 2 if h >= H // 2 else 0
            mine = (pos + shift) // group_size
            readable = [(s + shift) // group_size == mine or s < num_sinks for s in range(pos + 1)]
            keep = torch.tensor(readable, device=q.device)
            keys, values = k[:, : pos + 1, h // group][:, keep], v[:, : pos + 1, h // group][:, keep]
            scores = torch.einsum("bk,bsk->bs", q[:, t, h], keys) / math.sqrt(K)
            out[:, t, h] = torch.einsum("bs,bsv->bv", torch.softmax(scores, dim=-1), values)
    return out
