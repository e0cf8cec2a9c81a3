"""Mamba-2's SSD algorithm: chunked state space duality (arXiv:2405.21060, sec. 6).

With ``a_t = dt_t A <= 0`` the per-step log-decay, split the sequence into chunks of ``C`` steps:

1. inside a chunk the SSM is masked "attention" ``Y = (L o C B^T) (dt x)`` with
   ``L_ts = exp(sum_{s<r<=t} a_r)`` for ``s <= t`` (a segment sum, computed in log space);
2. each chunk's own contribution to the state at its end, ``sum_s exp(A_end - A_s) dt_s x_s B_s^T``;
3. states passed between chunks by a segment-sum decay over chunk ends (a ``[N+1, N+1]`` matmul,
   which also folds in the incoming state, so no Python loop over chunks);
4. each chunk's output from the state entering it, ``exp(A_t) h C_t``.

Every exponent is a sum of ``a``'s over a forward segment (non-positive); the entries above the
diagonal are set to ``-inf`` before ``exp``. Shapes as in :mod:`mixerlab.ops.ssd.reference`;
inside, chunks are ``[B, N, C, *]`` (``N`` chunks). ``T`` is zero-padded: a padded step has
``dt = 0``, so it neither decays nor writes the state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


def segsum(a: Tensor) -> Tensor:
    """``out[..., t, s] = sum_{s<r<=t} a[..., r]`` for ``s <= t`` and ``-inf`` above the diagonal."""
    L = a.shape[-1]
    csum = a.cumsum(-1)
    out = csum[..., :, None] - csum[..., None, :]
    keep = torch.ones(L, L, dtype=torch.bool, device=a.device).tril()
    return out.masked_fill(~keep, float("-inf"))


def ssd_chunk(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B_: Tensor,
    C_: Tensor,
    *,
    state: Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """Returns ``(y: [B, T, H, P], final state: [B, H, P, N])``; same maths as the reference."""
    Bsz, T, H, P = x.shape
    N = B_.shape[-1]
    pad = (-T) % chunk_size
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        dt = F.pad(dt, (0, 0, 0, pad))
        B_, C_ = (F.pad(t, (0, 0, 0, pad)) for t in (B_, C_))
    xdt = rearrange(x * dt[..., None], "b (n c) h p -> b n c h p", c=chunk_size)
    a = rearrange(dt * A, "b (n c) h -> b h n c", c=chunk_size)  # log-decay per step
    Bc, Cc = (rearrange(t, "b (n c) s -> b n c s", c=chunk_size) for t in (B_, C_))
    a_cum = a.cumsum(-1)  # [B, H, N, C]

    # 1. intra-chunk: masked quadratic form
    L = torch.exp(segsum(a))  # [B, H, N, C, C]
    scores = torch.einsum("bnts,bhnts->bhnts", Cc @ Bc.transpose(-1, -2), L)
    y_diag = torch.einsum("bhnts,bnshp->bnthp", scores, xdt)

    # 2. each chunk's contribution to the state at its end
    to_end = torch.exp(a_cum[..., -1:] - a_cum)  # [B, H, N, C]
    chunk_states = torch.einsum("bnsd,bhns,bnshp->bnhpd", Bc, to_end, xdt)  # [B, N, H, P, N_state]

    # 3. pass states across chunks; the incoming state acts as chunk "-1"
    h0 = x.new_zeros(Bsz, H, P, N) if state is None else state
    chunk_states = torch.cat([h0[:, None], chunk_states], dim=1)  # [B, N+1, H, P, N_state]
    chunk_decay = torch.exp(segsum(F.pad(a_cum[..., -1], (1, 0))))  # [B, H, N+1, N+1]
    entering = torch.einsum("bhij,bjhpd->bihpd", chunk_decay, chunk_states)
    entering, final = entering[:, :-1], entering[:, -1]

    # 4. outputs from the state entering each chunk
    y_off = torch.einsum("bntd,bnhpd,bhnt->bnthp", Cc, entering, torch.exp(a_cum))
    y = rearrange(y_diag + y_off, "b n c h p -> b (n c) h p")
    return y[:, :T], final
