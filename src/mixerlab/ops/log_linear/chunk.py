"""Log-linear Mamba-2 in chunks (the fast training form).

Shapes as in :mod:`mixerlab.ops.log_linear.reference`; a chunk of ``C`` tokens starts at absolute
position ``p``.

Within a chunk the output is the paper's masked matrix form,
``Y = (C B^T * M^S * M^H) (dt x)`` with the SSM mask ``M^S_ts = exp(sum_{r=s+1..t} dt_r A)`` and the
level mask ``M^H_ts = lambda_t^(l(t, s))``. The tokens before the chunk enter through the bucket
states carried in: every bucket of query ``p - 1`` is a dyadic block that lies inside a single
bucket of any later query ``t`` (the bits above the block's level are shared by all its tokens,
and ``t > p - 1`` sets the block's own bit whenever it agrees with ``p - 1`` above it), so bucket
``l'`` reaches ``t`` with the weight ``lambda_t^(l(t, r_l'))`` of any one representative ``r_l'``,
``r_0 = p - 1`` and ``r_l' = (p - 1) xor 2^(l'-1)``. The chunk's last query re-buckets the same way
(the carried buckets merge, the chunk's tokens join by their level), which gives the next chunk's
states. Cost: ``O(T C)`` inside chunks plus ``O(T log T)`` bucket reads, sub-quadratic in ``T``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixerlab.ops.log_linear.reference import num_levels_after


def _bit_length(v: Tensor, bits: int) -> Tensor:
    """``bit_length`` of non-negative integers ``v`` below ``2^bits`` (exact, no float log)."""
    powers = 2 ** torch.arange(bits, device=v.device)
    return (v[..., None] >= powers).sum(-1)


def log_linear_chunk(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B_: Tensor,
    C_: Tensor,
    lam: Tensor,
    *,
    states: Tensor | None = None,
    position: int = 0,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """Return ``(y: [B, T, H, P], states: [B, L, H, P, N])``; equal to :func:`log_linear_reference`."""
    Bsz, T, H, P = x.shape
    N = B_.shape[-1]
    if states is None:
        states = x.new_zeros(Bsz, num_levels_after(position), H, P, N)
    states = states.to(x.dtype)
    ys = []
    for start in range(0, T, chunk_size):
        stop = min(start + chunk_size, T)
        y, states = _chunk(
            x[:, start:stop], dt[:, start:stop], A, B_[:, start:stop], C_[:, start:stop],
            lam[:, start:stop], states, position + start,
        )  # fmt: skip
        ys.append(y)
    return (torch.cat(ys, dim=1) if ys else x.new_zeros(Bsz, 0, H, P)), states


def _chunk(
    x: Tensor, dt: Tensor, A: Tensor, B_: Tensor, C_: Tensor, lam: Tensor, states: Tensor, p: int
) -> tuple[Tensor, Tensor]:
    C, L_max = x.shape[1], lam.shape[-1]
    bits = max(L_max, (p + C).bit_length())
    pos = torch.arange(p, p + C, device=x.device)
    cum = (dt * A).cumsum(1)  # [B, C, H]: log decay from the chunk start through each step
    u = dt[..., None] * x  # [B, C, H, P]

    # inside the chunk: the masked quadratic form
    causal = torch.ones(C, C, dtype=torch.bool, device=x.device).tril()
    level = _bit_length(pos[:, None] ^ pos[None, :], bits).masked_fill(~causal, 0)  # [C, C]
    seg = (cum[:, :, None, :] - cum[:, None, :, :]).masked_fill(~causal[..., None], float("-inf"))
    lam_ts = lam.gather(-1, level[None, :, None, :].expand(x.shape[0], C, lam.shape[2], C))  # [B, t, H, s]
    weights = torch.einsum("btn,bsn->bts", C_, B_)[:, :, None, :] * seg.exp().transpose(-1, -2) * lam_ts
    y = torch.einsum("bths,bshp->bthp", weights, u)

    # the buckets carried in, each read by every query at its level
    L_in = states.shape[1]
    reps = _representatives(p, L_in, x.device)
    if reps is not None:
        lv = _bit_length(pos[:, None] ^ reps[None, :], bits).clamp(max=L_max - 1)  # [C, L_in]
        lam_in = lam.gather(-1, lv[None, :, None, :].expand(x.shape[0], C, lam.shape[2], L_in))
        read = torch.einsum("blhpn,btn->bthlp", states, C_)
        y = y + torch.einsum("bthl,bthlp->bthp", lam_in * cum.exp()[..., None], read)

    # the buckets of the chunk's last query: carried ones merge, the chunk's tokens join
    L_out = num_levels_after(p + C)
    end = torch.tensor(p + C - 1, device=x.device)
    total = cum[:, -1]  # [B, H]
    join = F.one_hot(_bit_length(end ^ pos, bits), L_out).to(x.dtype)  # [C, L_out]
    w = (total[:, None] - cum).exp()  # [B, C, H]
    new = torch.einsum("bsh,sl,bshp,bsn->blhpn", w, join, u, B_)
    if reps is not None:
        move = F.one_hot(_bit_length(end ^ reps, bits).clamp(max=L_out - 1), L_out).to(x.dtype)
        new = new + torch.einsum("kl,bkhpn->blhpn", move, states) * total.exp()[:, None, :, None, None]
    return y, new


def _representatives(p: int, levels: int, device: torch.device) -> Tensor | None:
    """One token position of each carried bucket of query ``p - 1`` (``None`` before any token)."""
    if p == 0:
        return None
    last = p - 1
    return torch.tensor([last] + [last ^ (1 << (l - 1)) for l in range(1, levels)], device=device)
