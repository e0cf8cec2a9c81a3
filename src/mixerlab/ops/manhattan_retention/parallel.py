"""Manhattan self-attention (RMT, arXiv:2309.11523) in parallel form: one masked attention product."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


def manhattan_decay(gammas: Tensor, grid: tuple[int, int], num_prefix_tokens: int = 0) -> Tensor:
    """``D[h, n, m] = gamma_h^{|x_n - x_m| + |y_n - y_m|}``, ``[H, T, T]``; 1 on prefix rows/columns.

    Built as the Kronecker product of the two 1-D decays, ``gamma^{|dy|} gamma^{|dx|}``.
    """
    rows, cols = grid
    P = num_prefix_tokens

    def decay_1d(n: int) -> Tensor:  # [H, n, n]
        i = torch.arange(n, device=gammas.device, dtype=gammas.dtype)
        return gammas[:, None, None] ** (i[:, None] - i[None, :]).abs()

    grid_decay = rearrange(
        decay_1d(rows)[:, :, None, :, None] * decay_1d(cols)[:, None, :, None, :],
        "h y x v u -> h (y x) (v u)",
    )
    T = P + rows * cols
    full = grid_decay.new_ones(len(gammas), T, T)
    full[:, P:, P:] = grid_decay
    return full


def manhattan_retention_parallel(
    q: Tensor, k: Tensor, v: Tensor, gammas: Tensor, grid: tuple[int, int], num_prefix_tokens: int = 0
) -> Tensor:
    """Same as :func:`~mixerlab.ops.manhattan_retention.manhattan_retention_reference`, ``[B, T, H, K]``."""
    scale = q.shape[-1] ** -0.5
    scores = torch.einsum("bnhk,bmhk->bhnm", q, k) * scale
    probs = scores.softmax(dim=-1) * manhattan_decay(gammas, grid, num_prefix_tokens)
    return torch.einsum("bhnm,bmhk->bnhk", probs, v)
