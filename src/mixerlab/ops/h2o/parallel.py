"""Heavy-hitter attention for all queries at once (see :mod:`.reference`).

One explicit causal weight matrix ``[B, H, Tq, Tk]`` (the scores a fused SDPA kernel would not
return): the output is ``w @ v`` and each key's received attention is ``w`` summed over the
queries. Shapes as in the reference.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor

from mixerlab.ops.attention.parallel import causal_mask


def h2o_attention_parallel(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    Tq, Tk, K = q.shape[1], k.shape[1], q.shape[-1]
    qh, kh, vh = (rearrange(t, "b t h k -> b h t k") for t in (q, k, v))
    scores = (qh @ kh.transpose(-1, -2)) / math.sqrt(K)
    allowed = causal_mask(Tq, Tk, None, q.device)
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)  # [B, H, Tq, Tk]
    o = rearrange(weights @ vh, "b h t v -> b t h v")
    return o, rearrange(weights.sum(2), "b h s -> b s h")
