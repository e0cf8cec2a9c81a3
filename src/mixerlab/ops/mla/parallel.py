"""Multi-head latent attention for all queries at once: keys and values rebuilt, then SDPA.

The training form of :mod:`.reference`: each head's keys ``[W_UK^h c_s, k^R_s]`` and values
``W_UV^h c_s`` are materialised from the latents ``[B, Tk, C]`` (the shared rotated key broadcast
to every head) and one :func:`mixerlab.ops.attention.attention_parallel` call does the rest.
Shapes as in the reference.
"""

from __future__ import annotations

import torch
from einops import repeat
from torch import Tensor

from mixerlab.ops.attention import attention_parallel


def mla_parallel(
    q_nope: Tensor, q_rope: Tensor, latent: Tensor, k_rope: Tensor, w_uk: Tensor, w_uv: Tensor
) -> Tensor:
    H = q_nope.shape[2]
    k_nope = torch.einsum("bsc,hkc->bshk", latent, w_uk)  # [B, Tk, H, K]
    v = torch.einsum("bsc,hkc->bshk", latent, w_uv)  # [B, Tk, H, K]
    k = torch.cat([k_nope, repeat(k_rope, "b s r -> b s h r", h=H)], dim=-1)
    q = torch.cat([q_nope, q_rope], dim=-1)
    return attention_parallel(q, k, v)
