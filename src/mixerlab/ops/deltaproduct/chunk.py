"""(Gated) DeltaProduct through the chunked gated delta rule (``ops.delta_rule``), arXiv:2502.10297.

``n_h`` Householder steps per token are the delta rule over the interleaved sequence of length
``n_h T``: token ``t``'s ``j``-th key/value/beta sit at position ``n_h t + j``, the gate acts on the
first of them only (log-decay 0 elsewhere) and the output is read after the last. ``chunk_size``
counts interleaved steps. Shapes as in :mod:`mixerlab.ops.deltaproduct.reference`.
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from mixerlab.ops.delta_rule import delta_rule_chunk, delta_rule_recurrent


def deltaproduct_chunk(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    beta: Tensor,
    g: Tensor | None = None,
    *,
    state: Tensor | None = None,
    scale: float | None = None,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """Returns ``(o: [B, T, H, V], final state: [B, H, K, V])``."""
    n_h = k.shape[2]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    # the query sits at each token's last step (the only one read), the gate at its first
    q_steps = rearrange(F.pad(q[:, :, None], (0, 0, 0, 0, n_h - 1, 0)), "b t n h k -> b (t n) h k")
    g_steps = (
        None if g is None else rearrange(F.pad(g[:, :, None], (0, 0, 0, n_h - 1)), "b t n h -> b (t n) h")
    )
    o, S = delta_rule_chunk(
        q_steps,
        rearrange(k, "b t n h k -> b (t n) h k"),
        rearrange(v, "b t n h v -> b (t n) h v"),
        rearrange(beta, "b t n h -> b (t n) h"),
        g_steps,
        state=state,
        scale=scale,
        chunk_size=chunk_size,
    )
    return o[:, n_h - 1 :: n_h], S


def deltaproduct_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    beta: Tensor,
    g: Tensor | None,
    state: Tensor,
    *,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """One token: ``q: [B, H, K]``, ``k: [B, n_h, H, K]``, ``v: [B, n_h, H, V]``, ``beta: [B, n_h, H]``."""
    for j in range(k.shape[1]):
        o, state = delta_rule_recurrent(
            q, k[:, j], v[:, j], beta[:, j], g if j == 0 else None, state, scale=scale
        )
    return o, state
