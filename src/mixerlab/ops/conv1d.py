"""Short causal depthwise convolution with a carried tail of past inputs.

The short convolution in front of Mamba (arXiv:2312.00752), H3, GLA/DeltaNet-style layers, ...:
each channel is convolved with its own ``W``-tap filter over the current and the ``W - 1``
previous tokens. Carrying those ``W - 1`` inputs as a state makes one call over a sequence equal
to any split of it into several calls (decoding included).

Shapes: ``x: [B, T, C]``; ``weight: [C, W]``; ``bias: [C]`` or None; ``state: [B, W-1, C]`` (the
last ``W - 1`` inputs seen before ``x``, zeros at the start of a sequence).

Convention (the one of ``nn.Conv1d`` with left padding): ``weight[:, -1]`` multiplies the current
token, ``weight[:, -1 - k]`` the token ``k`` steps back::

    y[t, c] = bias[c] + sum_{k=0}^{W-1} weight[c, W-1-k] * x[t-k, c]

All three functions return ``(y, new_state)`` with ``new_state`` the last ``W - 1`` inputs.
Token mixers reach them through :class:`mixerlab.layers.short_conv.ShortConv`, which owns the
filter and its initialisation and picks the form (reference, one step, or the fast one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

__all__ = ["causal_conv1d", "causal_conv1d_recurrent", "causal_conv1d_reference"]


def _with_past(x: Tensor, weight: Tensor, state: Tensor | None) -> Tensor:
    """``[B, W-1+T, C]``: the carried inputs (zeros if none) followed by ``x``."""
    if state is None:
        state = x.new_zeros(x.shape[0], weight.shape[1] - 1, x.shape[2])
    return torch.cat([state.to(x.dtype), x], dim=1)


def causal_conv1d_reference(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Plain loop over positions and taps (the specification)."""
    W, T = weight.shape[1], x.shape[1]
    padded = _with_past(x, weight, state)
    ys = []
    for t in range(T):
        # padded index of x[t] is t + W - 1; tap j reads x[t - (W-1-j)] = padded[t + j]
        acc = torch.zeros_like(x[:, 0])
        for j in range(W):
            acc = acc + weight[:, j] * padded[:, t + j]
        ys.append(acc if bias is None else acc + bias)
    y = torch.stack(ys, dim=1) if ys else x[:, :0].clone()
    return y, padded[:, padded.shape[1] - (W - 1) :]


# Up to this width a sum of shifted copies beats F.conv1d on CPU: PyTorch's grouped (depthwise)
# conv backward is very slow there (measured 1.5-3x slower forward+backward for W=4).
SHIFTED_SUM_MAX_WIDTH = 8


def causal_conv1d(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Fast form over the carried tail followed by ``x``: shifted sums for short kernels, else one
    grouped ``F.conv1d``."""
    T, W = x.shape[1], weight.shape[1]
    padded = _with_past(x, weight, state)
    tail = padded[:, padded.shape[1] - (W - 1) :]
    if T == 0:  # nothing to convolve; F.conv1d rejects inputs shorter than the kernel
        return x, tail
    if W <= SHIFTED_SUM_MAX_WIDTH:
        y = padded[:, :T] * weight[:, 0]
        for j in range(1, W):
            y = y + padded[:, j : j + T] * weight[:, j]
        return (y if bias is None else y + bias), tail
    y = F.conv1d(
        rearrange(padded, "b t c -> b c t"),
        rearrange(weight, "c w -> c 1 w"),
        bias,
        groups=x.shape[2],
    )
    return rearrange(y, "b c t -> b t c"), tail


def causal_conv1d_recurrent(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """One decoding step, ``x: [B, 1, C]``: a dot product of the window with the filter."""
    window = _with_past(x, weight, state)  # [B, W, C]
    y = torch.einsum("bwc,cw->bc", window, weight)
    if bias is not None:
        y = y + bias
    return y[:, None], window[:, 1:]
