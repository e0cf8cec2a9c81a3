"""Non-causal linear attention: every query reads the sum over the whole sequence.

"Transformers are RNNs" (arXiv:2006.16236), eq. 4-6 (the encoder's form, before the causal
masking of section 3.3): with no decay, ``o_t = q_t sum_s k_s^T v_s`` for every ``t``. Feature
maps and the normaliser are applied by the layer (a column of ones among the values makes the
last output column ``q_t . sum_s k_s``, the normaliser over the whole sequence).

Shapes: ``q, k: [B, T, H, K]``, ``v: [B, T, H, V]``; returns ``o: [B, T, H, V]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def linear_attention_noncausal_reference(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Plain loops: accumulate ``S = sum_s k_s^T v_s`` step by step, then read it at every ``t``."""
    B, T, H, K = q.shape
    S = q.new_zeros(B, H, K, v.shape[-1])
    for s in range(T):
        S = S + torch.einsum("bhk,bhv->bhkv", k[:, s], v[:, s])
    outs = [torch.einsum("bhk,bhkv->bhv", q[:, t], S) for t in range(T)]
    return torch.stack(outs, dim=1) if outs else v.new_zeros(B, 0, H, v.shape[-1])


def linear_attention_noncausal_parallel(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Two contractions, O(T K V) per head: the key-value sum, then every query against it."""
    S = torch.einsum("bshk,bshv->bhkv", k, v)
    return torch.einsum("bthk,bhkv->bthv", q, S)
