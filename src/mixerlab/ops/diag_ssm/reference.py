"""Diagonal SSM as a plain recurrence, one step per token (the specification).

Shapes: ``x: [B, T, H, E]`` (the ``E`` channels of group ``h`` share its parameters); ``dtA, dB, C:
[H, M]`` complex (``dtA = dt A``, so ``dA = exp(dtA)``); ``D: [H]``; ``h0: [B, H, E, M]`` complex or
None. Returns ``y: [B, T, H, E]`` and the final state ``[B, H, E, M]`` (complex).
"""

from __future__ import annotations

import torch
from torch import Tensor


def diag_ssm_reference(
    x: Tensor, dtA: Tensor, dB: Tensor, C: Tensor, D: Tensor, h0: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    B, T, H, E = x.shape
    dA = torch.exp(dtA)
    h = x.new_zeros(B, H, E, dA.shape[-1], dtype=dA.dtype) if h0 is None else h0
    ys = []
    for t in range(T):
        h = dA[:, None] * h + dB[:, None] * x[:, t, :, :, None]
        y = 2 * torch.einsum("bhem,hm->bhe", h, C).real
        ys.append(y + D[:, None] * x[:, t])
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(x.shape)
    return y, h
