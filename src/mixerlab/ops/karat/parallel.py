"""Kolmogorov-Arnold attention for all queries at once (the fast form).

The reference's rows (:mod:`.reference`) as one batched score matrix ``[B, H, Tq, Tk]``: the
learnable function is applied elementwise, hidden keys are zeroed (the softmax's ``-inf``), and
each row is divided by its l1 norm. Shapes as in the reference.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor

from mixerlab.ops.idw_attention import visible_keys
from mixerlab.ops.kan import fourier_basis


def karat_parallel(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    coefficients: Tensor,
    bias: Tensor,
    *,
    eps: float = 1e-6,
    causal: bool = True,
    key_mask: Tensor | None = None,
) -> Tensor:
    H, G, K = q.shape[2], k.shape[2], q.shape[3]
    F = coefficients.shape[-1] // 2
    q = rearrange(q, "b t h k -> b h t k")
    k, v = (rearrange(t, "b s g k -> b g s k").repeat_interleave(H // G, dim=1) for t in (k, v))
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(K)  # [B, H, Tq, Tk]
    phi = torch.einsum("bhtsf,hf->bhts", fourier_basis(scores, F), coefficients) + bias[:, None, None]
    phi = phi * visible_keys(q.shape[2], k.shape[2], causal, key_mask, q.device)
    weights = phi / (phi.abs().sum(-1, keepdim=True) + eps)
    return rearrange(weights @ v, "b h t v -> b t h v")
