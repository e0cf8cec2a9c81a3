"""One decoding step of the diagonal SSM.

Shapes: ``x: [B, H, E]``; ``dtA, dB, C: [H, M]`` complex (``dA = exp(dtA)``); ``D: [H]``;
``h: [B, H, E, M]`` complex.
"""

from __future__ import annotations

import torch
from torch import Tensor


def diag_ssm_recurrent(
    x: Tensor, dtA: Tensor, dB: Tensor, C: Tensor, D: Tensor, h: Tensor
) -> tuple[Tensor, Tensor]:
    h = torch.exp(dtA)[:, None] * h + dB[:, None] * x[..., None]
    y = 2 * torch.einsum("bhem,hm->bhe", h, C).real + D[:, None] * x
    return y, h
