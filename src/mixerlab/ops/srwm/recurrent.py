"""The self-referential weight matrix (arXiv:2202.05780), vectorised over batch and heads.

The update is nonlinear in the weights (the queries, keys and learning rates that modify ``W``
are produced by ``W`` itself and pass through a softmax), so there is no chunkwise-parallel form:
the authors train it sequentially too (a custom CUDA kernel that loops over time). This is the
fastest form here: one fused step per token.

Shapes: ``x: [B, T, H, K]``, weights ``[B, H, R, K]`` with ``R = 3K + 4`` rows ``[y; q; k; beta]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def srwm_step(x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """One step: ``x: [B, H, K]`` -> ``(y: [B, H, K], new weights: [B, H, R, K])``."""
    K = x.shape[-1]
    out = (weight @ torch.softmax(x, dim=-1)[..., None])[..., 0]  # [B, H, R]
    y, q, k, b = out.split([K, K, K, 4], dim=-1)
    phi_qk = torch.softmax(torch.stack([q, k], dim=-1), dim=-2)  # [B, H, K, 2]
    v_pair = weight @ phi_qk  # [B, H, R, 2]: W phi(q), W phi(k)
    lr = torch.sigmoid(b).repeat_interleave(torch.tensor([K, K, K, 4], device=x.device), dim=-1)
    delta = lr * (v_pair[..., 0] - v_pair[..., 1])  # [B, H, R]
    return y, weight + delta[..., None] * phi_qk[..., 1][..., None, :]


def srwm_recurrent(x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Returns ``(y: [B, T, H, K], final weights: [B, H, R, K])``."""
    ys = []
    for t in range(x.shape[1]):
        y, weight = srwm_step(x[:, t], weight)
        ys.append(y)
    return torch.stack(ys, dim=1), weight
