"""Kolmogorov-Arnold attention as a plain loop over queries (the specification).

"Kolmogorov-Arnold Attention" (KArAt, arXiv:2503.10632): the softmax over a row of scores is
replaced by a learnable univariate function on a Fourier basis (FourierKAN's,
:func:`mixerlab.ops.kan.fourier_basis`), one per head, applied to every visible score of the row,
and the row is projected to unit l1 norm so that its scale stays that of a softmax row::

    s_ts  = q_t . k_s / sqrt(K)
    phi(s) = c_0 + sum_{j=1..F} a_j cos(j s) + b_j sin(j s)
    w_ts  = phi(s_ts) / (sum_{s' visible} |phi(s_ts')| + eps),     o_t = sum_s w_ts v_s

Visibility (causal, ``key_mask``: a query always reads its own key) is attention's.

Shapes: ``q: [B, Tq, H, K]``, ``k: [B, Tk, G, K]``, ``v: [B, Tk, G, V]`` (query head ``h`` reads
key/value head ``h // (H // G)``); ``coefficients: [H, 2F]`` (cosines then sines), ``bias: [H]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mixerlab.ops.kan import fourier_basis


def karat_reference(
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
    B, Tq, H, K = q.shape
    Tk, G = k.shape[1], k.shape[2]
    group, offset, scale = H // G, Tk - Tq, 1.0 / math.sqrt(K)
    F = coefficients.shape[-1] // 2
    out = q.new_zeros(B, Tq, H, v.shape[-1])
    for t in range(Tq):
        pos = offset + t
        stop = pos + 1 if causal else Tk
        for h in range(H):
            scores = torch.einsum("bk,bsk->bs", q[:, t, h], k[:, :stop, h // group]) * scale
            phi = fourier_basis(scores, F) @ coefficients[h] + bias[h]  # [B, S]
            if key_mask is not None:
                readable = key_mask[:, :stop].clone()
                readable[:, pos] = True
                phi = phi * readable
            weights = phi / (phi.abs().sum(-1, keepdim=True) + eps)
            out[:, t, h] = torch.einsum("bs,bsv->bv", weights, v[:, :stop, h // group])
    return out
