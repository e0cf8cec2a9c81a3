"""Multi-head latent attention as a plain loop over queries, read from the compressed cache.

"DeepSeek-V2" (arXiv:2405.04434), section 2.1. Each cached token is a latent ``c_s = W_DKV x_s``
and one rotated key ``k^R_s`` shared by the heads; head ``h``'s key and value are ``W_UK^h c_s`` and
``W_UV^h c_s`` concatenated with ``k^R_s`` (keys only). The loop works on the latents directly,
with the up-projections absorbed into the query and the output, as the paper decodes::

    score_ts = ((W_UK^h)^T q^C_t) . c_s + q^R_t . k^R_s,  scaled by 1 / sqrt(K + R)
    o_t      = W_UV^h sum_{s<=t} softmax_s(score_ts) c_s

Shapes: ``q_nope: [B, Tq, H, K]``, ``q_rope: [B, Tq, H, R]``, ``latent: [B, Tk, C]``,
``k_rope: [B, Tk, R]``, ``w_uk, w_uv: [H, K, C]``; output ``[B, Tq, H, K]``. The queries are the
last ``Tq`` of the ``Tk`` positions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def mla_reference(
    q_nope: Tensor, q_rope: Tensor, latent: Tensor, k_rope: Tensor, w_uk: Tensor, w_uv: Tensor
) -> Tensor:
    B, Tq, H, K = q_nope.shape
    Tk, R = latent.shape[1], k_rope.shape[-1]
    scale, offset = 1.0 / math.sqrt(K + R), Tk - Tq
    out = q_nope.new_zeros(B, Tq, H, w_uv.shape[1])
    for t in range(Tq):
        stop = offset + t + 1
        for h in range(H):
            absorbed = q_nope[:, t, h] @ w_uk[h]  # [B, C]: the query read in latent space
            scores = torch.einsum("bc,bsc->bs", absorbed, latent[:, :stop])
            scores = (scores + torch.einsum("br,bsr->bs", q_rope[:, t, h], k_rope[:, :stop])) * scale
            pooled = torch.einsum("bs,bsc->bc", torch.softmax(scores, dim=-1), latent[:, :stop])
            out[:, t, h] = pooled @ w_uv[h].T
    return out
