"""Inverse-distance-weighting attention as a plain loop over queries (the specification).

"Inverse distance weighting attention" (arXiv:2310.18805): the dot-product score is replaced by
``-p log ||q_t - k_s||``, so that the softmax gives weights proportional to ``||q_t - k_s||^-p``::

    w_ts = d_ts^-p / sum_{s' <= t} d_ts'^-p,   d_ts = sqrt(||q_t - k_s||^2 + eps),   o_t = sum_s w_ts v_s

``eps`` keeps a query sitting on a key finite. Visibility (causal, ``key_mask``: a query always
reads its own key) is attention's (:mod:`mixerlab.ops.attention.reference`).

Shapes: ``q: [B, Tq, H, K]``, ``k: [B, Tk, G, K]``, ``v: [B, Tk, G, V]`` (query head ``h`` reads
key/value head ``h // (H // G)``); the queries are the last ``Tq`` of the ``Tk`` positions.
"""

from __future__ import annotations

import torch
from torch import Tensor


def idw_attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    power: float = 1.0,
    eps: float = 1e-6,
    causal: bool = True,
    key_mask: Tensor | None = None,
) -> Tensor:
    B, Tq, H, _ = q.shape
    Tk, G = k.shape[1], k.shape[2]
    group, offset = H // G, Tk - Tq
    out = q.new_zeros(B, Tq, H, v.shape[-1])
    for t in range(Tq):
        pos = offset + t
        stop = pos + 1 if causal else Tk
        for h in range(H):
            diff = q[:, t, h, None, :] - k[:, :stop, h // group]  # [B, S, K]
            distance = (diff.square().sum(-1) + eps).sqrt()  # [B, S]
            weights = distance ** (-power)
            if key_mask is not None:
                readable = key_mask[:, :stop].clone()
                readable[:, pos] = True
                weights = weights * readable
            weights = weights / weights.sum(-1, keepdim=True)
            out[:, t, h] = torch.einsum("bs,bsv->bv", weights, v[:, :stop, h // group])
    return out
