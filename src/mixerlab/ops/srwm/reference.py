"""The self-referential weight matrix (SRWM) as a literal loop over steps and heads (the spec).

"A Modern Self-Referential Weight Matrix That Learns to Modify Itself" (arXiv:2202.05780), eq. 5-8,
per head with ``W_{t-1} in R^{(3K + 4) x K}`` stacked as ``[W_y; W_q; W_k; W_beta]``::

    y_t, q_t, k_t, beta_t = W_y phi(x_t), W_q phi(x_t), W_k phi(x_t), W_beta phi(x_t)
    v_t    = W_{t-1} phi(q_t),     vbar_t = W_{t-1} phi(k_t)
    W_t    = W_{t-1} + sigmoid(beta_t) (v_t - vbar_t) phi(k_t)^T

with ``phi = softmax`` and one learning rate ``sigmoid(beta_t)[j]`` per sub-matrix ``j``.

Shapes: ``x: [B, T, H, K]``, weights ``[B, H, 3K + 4, K]``; returns ``y: [B, T, H, K]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def srwm_reference(x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Returns ``(y: [B, T, H, K], final weights: [B, H, 3K + 4, K])``."""
    B, T, H, K = x.shape
    heads = [
        [weight[:, h, i * K : (i + 1) * K] for i in range(3)] + [weight[:, h, 3 * K :]] for h in range(H)
    ]
    ys = []
    for t in range(T):
        y_heads = []
        for h in range(H):
            W_y, W_q, W_k, W_b = heads[h]
            phi_x = torch.softmax(x[:, t, h], dim=-1)  # [B, K]
            y = torch.einsum("bij,bj->bi", W_y, phi_x)
            phi_q = torch.softmax(torch.einsum("bij,bj->bi", W_q, phi_x), dim=-1)
            phi_k = torch.softmax(torch.einsum("bij,bj->bi", W_k, phi_x), dim=-1)
            lr = torch.sigmoid(torch.einsum("bij,bj->bi", W_b, phi_x))  # [B, 4]
            new = []
            for j, W in enumerate(heads[h]):
                v = torch.einsum("bij,bj->bi", W, phi_q)
                v_bar = torch.einsum("bij,bj->bi", W, phi_k)
                new.append(W + lr[:, j, None, None] * torch.einsum("bi,bj->bij", v - v_bar, phi_k))
            heads[h] = new
            y_heads.append(y)
        ys.append(torch.stack(y_heads, dim=1))
    final = torch.stack([torch.cat(hw, dim=1) for hw in heads], dim=1)
    return torch.stack(ys, dim=1), final
