"""Chunkwise-parallel (gated) delta rule: WY / UT-transform representation per chunk.

DeltaNet (arXiv:2406.06484, sec. 3) and Gated DeltaNet (arXiv:2412.06464, sec. 3.3). In the
``[K, V]`` state layout, with ``G_t`` the cumulative log-decay inside a chunk (``G = 0`` for the
ungated rule) and ``S`` the state entering the chunk, the state after step ``t`` of the chunk is

    S_t = exp(G_t) S + sum_{i<=t} exp(G_t - G_i) k_i u_i^T

where the "pseudo-values" ``u`` solve a unit lower-triangular system (the UT transform)

    (I + A) u = diag(beta) V - diag(beta exp(G)) K S,   A_ti = beta_t exp(G_t - G_i) k_t.k_i  (i < t)

so ``u = U - W S`` with ``[U | W] = (I + A)^{-1} [diag(beta) V | diag(beta exp(G)) K]``, computed
for every chunk at once by one batched triangular solve. Only the ``u = U - W S`` correction, the
outputs and the state update depend on the incoming state, so the loop runs over chunks, never
over tokens. Every exponent is ``G_t - G_i`` with ``i <= t`` (or ``G_t`` itself), so only
non-positive numbers are exponentiated; the other entries are masked to ``-inf`` *before* ``exp``.

Shapes: ``q, k: [B, T, H, K]``, ``v: [B, T, H, V]``, ``beta, g: [B, T, H]``, state ``[B, H, K, V]``;
inside, chunks are ``[B, H, N, C, *]``. ``T`` is zero-padded to a multiple of ``C``: a padded step
has ``k = 0, beta = 0, g = 0`` and leaves the state unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from mixerlab.ops.contiguous_grad import contiguous_grad
from mixerlab.ops.precision import widen


def delta_rule_chunk(
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
    """Returns ``(o: [B, T, H, V], final state: [B, H, K, V])``; same maths as the reference."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    # A sequence shorter than a chunk is one chunk of its own length: padding T=32 to C=64 would
    # make the masks 4x and the triangular solve 8x larger for nothing (the maths is the same).
    C = max(1, min(chunk_size, T))
    scale = K**-0.5 if scale is None else scale
    beta = contiguous_grad(beta)
    g = None if g is None else contiguous_grad(g)
    pad = (-T) % C
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (q, k, v))
        beta = F.pad(beta, (0, 0, 0, pad))
        g = None if g is None else F.pad(g, (0, 0, 0, pad))
    q, k, v = (rearrange(t, "b (n c) h d -> b h n c d", c=C) for t in (q, k, v))
    beta = rearrange(beta, "b (n c) h -> b h n c", c=C)
    q = q * scale

    idx = torch.arange(C, device=q.device)
    strict = idx[:, None] > idx[None, :]  # [C, C]: i < t
    causal = idx[:, None] >= idx[None, :]  # [C, C]: i <= t
    if g is None:
        decay_strict = strict.to(q.dtype)
        decay_causal = causal.to(q.dtype)
        k_in = k  # k_i scaled by exp(G_i) as seen from the chunk start: no decay
        k_out = k  # k_i scaled by exp(G_C - G_i) as seen from the chunk end
        q_in = q
        chunk_decay = None
    else:
        G = rearrange(g, "b (n c) h -> b h n c", c=C).cumsum(-1)  # [B, H, N, C]
        diff = G[..., :, None] - G[..., None, :]  # [B, H, N, C, C]: G_t - G_i
        decay_strict = torch.exp(diff.masked_fill(~strict, float("-inf")))
        decay_causal = torch.exp(diff.masked_fill(~causal, float("-inf")))
        k_in = k * torch.exp(G)[..., None]
        k_out = k * torch.exp(G[..., -1:] - G)[..., None]
        q_in = q * torch.exp(G)[..., None]
        chunk_decay = torch.exp(G[..., -1])[..., None, None]  # [B, H, N, 1, 1]

    kb = k * beta[..., None]
    A = (kb @ k.transpose(-1, -2)) * decay_strict  # [B, H, N, C, C]
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    rhs = torch.cat([v * beta[..., None], k_in * beta[..., None]], dim=-1)
    # the UT transform inverts a product of C factors: it runs in float32 for half-precision inputs
    # (which also have no triangular solve on the CPU)
    UW = torch.linalg.solve_triangular(*widen(A + eye, rhs), upper=False, unitriangular=True).to(rhs.dtype)
    U, W = UW.split([V, K], dim=-1)  # [B, H, N, C, V], [B, H, N, C, K]
    attn = (q @ k.transpose(-1, -2)) * decay_causal  # [B, H, N, C, C]

    S = q.new_zeros(B, H, K, V) if state is None else state
    # unbind once: indexing chunk n of a big tensor inside the loop would make autograd allocate
    # a full-size zero gradient per chunk (quadratic in the number of chunks)
    per_chunk = zip(
        U.unbind(2),
        W.unbind(2),
        q_in.unbind(2),
        attn.unbind(2),
        k_out.transpose(-1, -2).unbind(2),
        [None] * U.shape[2] if chunk_decay is None else chunk_decay.unbind(2),
    )
    outs = []
    for U_n, W_n, q_n, attn_n, k_out_n, decay_n in per_chunk:
        u = U_n - W_n @ S  # [B, H, C, V]
        outs.append(q_n @ S + attn_n @ u)
        S = (S if decay_n is None else S * decay_n) + k_out_n @ u
    o = rearrange(torch.stack(outs, dim=2), "b h n c v -> b (n c) h v")
    return o[:, :T], S
