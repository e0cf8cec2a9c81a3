"""Short causal depthwise convolution with a carried tail (private to the delta-rule and SSD mixers).

Same signature as ``mixerlab.ops.conv1d.causal_conv1d`` so the layers can switch to the shared op
once it exists. Shapes: ``x: [B, T, C]``, ``weight: [C, W]``, ``state: [B, W-1, C]`` (the last
``W - 1`` inputs seen, zeros at the start of a sequence).
"""

from __future__ import annotations

import torch
from torch import Tensor


def short_causal_conv1d(
    x: Tensor, weight: Tensor, bias: Tensor | None, state: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``y_t = sum_j weight[:, j] * x_{t - (W-1) + j} (+ bias)``; returns ``(y, new_state)``."""
    B, T, C = x.shape
    W = weight.shape[-1]
    if state is None:
        state = x.new_zeros(B, W - 1, C)
    xp = torch.cat([state, x], dim=1)  # [B, W-1+T, C]
    # A sum of W shifted copies: for W ~ 4 this is far faster on CPU than a grouped conv1d,
    # whose depthwise backward is pathologically slow there.
    y = xp[:, :T] * weight[:, 0]
    for j in range(1, W):
        y = y + xp[:, j : j + T] * weight[:, j]
    if bias is not None:
        y = y + bias
    return y, xp[:, xp.shape[1] - (W - 1) :]
