"""Heavy-hitter attention as a plain loop over queries: softmax attention that also reports how
much attention each key received (the specification).

"H2O: Heavy-Hitter Oracle" (arXiv:2306.14048): every query reads every key it may see (causal
softmax attention, eq. 1 of "Attention Is All You Need"), and the score a key accumulates is the
sum of the attention weights it receives, ``sum_t softmax_s(q_t . k_s / sqrt(K))``, which decides
what the cache keeps (:mod:`.evict`).

Shapes: ``q: [B, Tq, H, K]``, ``k, v: [B, Tk, H, K]`` (one key list per head: heads evict
independently); returns ``o: [B, Tq, H, K]`` and ``received: [B, Tk, H]``. The queries are the
last ``Tq`` of the ``Tk`` keys.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def h2o_attention_reference(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    B, Tq, H, K = q.shape
    Tk = k.shape[1]
    out = q.new_zeros(B, Tq, H, v.shape[-1])
    received = q.new_zeros(B, Tk, H)
    for t in range(Tq):
        stop = Tk - Tq + t + 1
        for h in range(H):
            scores = torch.einsum("bk,bsk->bs", q[:, t, h], k[:, :stop, h]) / math.sqrt(K)
            weights = torch.softmax(scores, dim=-1)
            out[:, t, h] = torch.einsum("bs,bsv->bv", weights, v[:, :stop, h])
            received[:, :stop, h] += weights
    return out, received
