"""Manhattan self-attention written from RMT's equation (arXiv:2309.11523), one query at a time."""

from __future__ import annotations

import torch
from torch import Tensor


def manhattan_retention_reference(
    q: Tensor, k: Tensor, v: Tensor, gammas: Tensor, grid: tuple[int, int], num_prefix_tokens: int = 0
) -> Tensor:
    """``o_n = sum_m softmax_m(q_n . k_m / sqrt(K)) gamma^{|x_n - x_m| + |y_n - y_m|} v_m``.

    ``q, k, v: [B, T, H, K]``, ``gammas: [H]``; tokens after the ``num_prefix_tokens`` prefix are
    the cells of ``grid = (H_grid, W_grid)`` in row-major order. Returns ``[B, T, H, K]``.
    """
    T, P, W = q.shape[1], num_prefix_tokens, grid[1]
    scale = q.shape[-1] ** -0.5

    def cell(t: int) -> tuple[int, int] | None:
        return None if t < P else divmod(t - P, W)  # (row, column)

    out = torch.zeros_like(v)
    for n in range(T):
        scores = torch.stack([(q[:, n] * k[:, m]).sum(-1) * scale for m in range(T)], dim=-1)  # [B, H, T]
        probs = scores.softmax(dim=-1)
        for m in range(T):
            a, b = cell(n), cell(m)
            distance = 0 if a is None or b is None else abs(a[0] - b[0]) + abs(a[1] - b[1])
            out[:, n] += (probs[..., m] * gammas**distance)[..., None] * v[:, m]
    return out
