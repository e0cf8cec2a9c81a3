"""One decoding step of the Mesa layer (MesaNet, arXiv:2506.05233).

Shapes: ``q, k: [B, H, K]``, ``v: [B, H, V]``, ``log_decay, beta: [B, H]``, ``lam: [H, K]``; state
``(H^kk: [B, H, K, K], H^kv: [B, H, K, V])``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixerlab.ops.precision import widen


def mesa_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor,
    beta: Tensor,
    lam: Tensor,
    state: tuple[Tensor, Tensor],
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Return ``(o: [B, H, V], (H^kk, H^kv))``: update both statistics, one Cholesky solve, read."""
    out_dtype = v.dtype
    q, k, v, log_decay, beta, lam = widen(q, k, v, log_decay, beta, lam)  # as in mesa_chunk
    h_kk, h_kv = widen(*state)
    gamma = torch.exp(log_decay)[..., None, None]
    bk = beta[..., None] * k
    h_kk = gamma * h_kk + bk[..., :, None] * k[..., None, :]
    h_kv = gamma * h_kv + bk[..., :, None] * v[..., None, :]
    chol = torch.linalg.cholesky(h_kk + torch.diag_embed(lam))
    x = torch.cholesky_solve(q[..., None], chol)[..., 0]
    return (x[..., None, :] @ h_kv)[..., 0, :].to(out_dtype), (h_kk, h_kv)
