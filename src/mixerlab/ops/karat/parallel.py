"""Kolmogorov-Arnold attention for all queries at once (the fast form), tile by tile.

"Kolmogorov-Arnold Attention" (KArAt, arXiv:2503.10632): the reference's rows
(:mod:`.reference`) computed over ``[query block, key block]`` tiles of the score matrix, the way
flash attention walks softmax attention. Three things make it fast on a CPU:

- Causal tiles above the diagonal are skipped, and only the tiles that the diagonal (or a padding
  mask) crosses are masked.
- Only one sine and one cosine per score: the harmonics ``cos(j s)``, ``sin(j s)`` come from the
  Chebyshev recurrence ``c_j = 2 cos(s) c_{j-1} - c_{j-2}`` (the same for ``sin``). Each harmonic is
  stored with a sign ``sigma_j`` (``+ + - - + + ...`` for ``j = 0, 1, 2, ...``) that turns the
  recurrence into one fused ``addcmul`` per harmonic; the signs are folded into the coefficients.
  The learned function and its derivative are then one batched matrix-vector product each.
- A hand-written backward recomputes each tile instead of keeping ``[B, H, T, T, 2F]`` basis
  tensors for autograd: it keeps the output and each row's l1 norm ``n_t``, and with
  ``D_t = dO_t . o_t`` (as in softmax's backward) ``dL/dphi_ts = (dO_t . v_s - sign(phi_ts) D_t) / n_t``.

Tiles are small enough to stay in the CPU's cache. Half-precision inputs run in float32.
Shapes as in the reference.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor

from mixerlab.ops.precision import wide_dtype

# [query rows, keys] of one tile: with 4 heads a 64 x 256 tile and its 2F harmonics stay near the
# size of a core's L2 cache, while each tile still amortises some 40 small torch calls
BLOCK_SIZES = (64, 256)


def _signs(F: int) -> list[float]:
    """``sigma_j`` for ``j = 1..F``: ``+1`` when ``j // 2`` is even, else ``-1``."""
    return [1.0 if (j // 2) % 2 == 0 else -1.0 for j in range(1, F + 1)]


def _harmonics(s: Tensor, F: int) -> Tensor:
    """``[N, 2F, P]``: ``sigma_j cos(j s)`` (rows ``0..F-1``) and ``sigma_j sin(j s)`` (rows
    ``F..2F-1``) for the scores ``s: [N, P]``, from one cosine and one sine."""
    x = torch.cos(s)
    cos, sin = [x], [torch.sin(s)]
    if F >= 2:  # sigma_2 = -1: -cos 2s = 1 - 2x^2 and -sin 2s = -2 x sin s
        cos.append((x * x).mul_(-2.0).add_(1.0))
        sin.append((x * sin[0]).mul_(-2.0))
    # sigma_j c_j = sigma_{j-2} c_{j-2} + (2 sigma_j sigma_{j-1}) x sigma_{j-1} c_{j-1}
    for j in range(3, F + 1):
        step = -2.0 if j % 2 == 0 else 2.0
        for rows in (cos, sin):
            rows.append(torch.addcmul(rows[j - 3], x, rows[j - 2], value=step))
    return torch.stack(cos + sin, dim=1)


def _visible(
    rows: tuple[int, int], cols: tuple[int, int], offset: int, causal: bool, key_mask: Tensor | None
) -> Tensor | None:
    """Boolean ``[B or 1, 1, n, m]`` visibility of one tile (attention's: causal or not, padded keys
    hidden but a query always reads its own key); ``None`` when every key of the tile is visible."""
    (i0, i1), (j0, j1) = rows, cols
    if key_mask is None and not (causal and j1 - 1 > offset + i0):
        return None
    device = key_mask.device if key_mask is not None else None
    query = torch.arange(offset + i0, offset + i1, device=device)[:, None]
    key = torch.arange(j0, j1, device=device)[None, :]
    allowed = key <= query if causal else torch.ones(i1 - i0, j1 - j0, dtype=torch.bool, device=device)
    if key_mask is None:
        return allowed[None, None]
    return (allowed[None, None] & key_mask[:, None, None, j0:j1]) | (key == query)[None, None]


def _tiles(Tq: int, Tk: int, causal: bool, block_sizes: tuple[int, int]):
    """``((i0, i1), [(j0, j1), ...])`` per query block: the key blocks it reads."""
    (bq, bk), offset = block_sizes, Tk - Tq
    for i0 in range(0, Tq, bq):
        i1 = min(i0 + bq, Tq)
        stop = min(Tk, offset + i1) if causal else Tk
        yield (i0, i1), [(j0, min(j0 + bk, stop)) for j0 in range(0, stop, bk)]


class _KArAtFunction(torch.autograd.Function):
    """Tiled forward and recomputing backward; ``q`` already scaled by ``1/sqrt(K)``, ``k, v`` with
    one head per query head: ``q, k: [B, H, T, K]``, ``v: [B, H, T, V]``."""

    @staticmethod
    def forward(ctx, q, k, v, coefficients, bias, eps, causal, key_mask, block_sizes):
        B, H, Tq, _ = q.shape
        Tk, F = k.shape[2], coefficients.shape[-1] // 2
        sigma = q.new_tensor(_signs(F)).repeat(2)
        coef = (coefficients * sigma).repeat(B, 1)[:, None, :]  # [B H, 1, 2F]
        bias_bh = bias.repeat(B)[:, None, None]  # [B H, 1, 1]
        out = q.new_empty(B, H, Tq, v.shape[-1])
        norm = q.new_empty(B, H, Tq)
        for (i0, i1), cols in _tiles(Tq, Tk, causal, block_sizes):
            qi = q[:, :, i0:i1]
            acc, l1 = None, None
            for j0, j1 in cols:
                phi = _phi(qi, k[:, :, j0:j1], coef, bias_bh)
                visible = _visible((i0, i1), (j0, j1), Tk - Tq, causal, key_mask)
                if visible is not None:
                    phi = phi.masked_fill_(~visible, 0.0)
                part, part_l1 = phi @ v[:, :, j0:j1], phi.abs().sum(-1)
                acc = part if acc is None else acc.add_(part)
                l1 = part_l1 if l1 is None else l1.add_(part_l1)
            norm[:, :, i0:i1] = l1 + eps
            out[:, :, i0:i1] = acc / norm[:, :, i0:i1, None]
        ctx.save_for_backward(q, k, v, coefficients, bias, out, norm, key_mask)
        ctx.causal, ctx.block_sizes = causal, block_sizes
        return out

    @staticmethod
    def backward(ctx, d_out):
        q, k, v, coefficients, bias, out, norm, key_mask = ctx.saved_tensors
        B, H, Tq, _ = q.shape
        Tk, F = k.shape[2], coefficients.shape[-1] // 2
        d_out = d_out.contiguous()
        sigma = q.new_tensor(_signs(F)).repeat(2)
        coef = (coefficients * sigma).repeat(B, 1)[:, None, :]
        bias_bh = bias.repeat(B)[:, None, None]
        # d phi / d s = sum_j j (b_j cos js - a_j sin js), in the signed basis
        j = torch.arange(1, F + 1, dtype=q.dtype, device=q.device)
        slope = torch.cat([j * coefficients[:, F:], -j * coefficients[:, :F]], -1) * sigma
        slope = slope.repeat(B, 1)[:, None, :]  # [B H, 1, 2F]
        inv_norm = norm.reciprocal()
        scaled_d = (d_out * out).sum(-1) * inv_norm  # D_t / n_t: [B, H, Tq]
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        d_coef = q.new_zeros(B * H, 2 * F, 1)
        d_bias = q.new_zeros(B, H)
        for (i0, i1), cols in _tiles(Tq, Tk, ctx.causal, ctx.block_sizes):
            qi, doi = q[:, :, i0:i1], d_out[:, :, i0:i1]
            inv_i, sd_i = inv_norm[:, :, i0:i1, None], scaled_d[:, :, i0:i1, None]
            for j0, j1 in cols:
                kj, vj = k[:, :, j0:j1], v[:, :, j0:j1]
                phi, basis = _phi(qi, kj, coef, bias_bh, keep_basis=True)
                visible = _visible((i0, i1), (j0, j1), Tk - Tq, ctx.causal, key_mask)
                if visible is not None:
                    phi = phi.masked_fill_(~visible, 0.0)
                dv[:, :, j0:j1] += (phi * inv_i).transpose(-1, -2) @ doi
                # dL/dphi = (dO . v) / n - sign(phi) D / n; hidden keys get none
                d_phi = (doi @ vj.transpose(-1, -2)).mul_(inv_i)
                d_phi = d_phi.addcmul_(torch.sign(phi), sd_i, value=-1.0)
                if visible is not None:
                    d_phi = d_phi.masked_fill_(~visible, 0.0)
                flat = rearrange(d_phi, "b h n m -> (b h) (n m) 1")
                d_coef += torch.bmm(basis, flat)
                d_bias += d_phi.sum((-1, -2))
                d_s = d_phi.mul_(torch.bmm(slope, basis).view_as(d_phi))
                dq[:, :, i0:i1] += d_s @ kj
                dk[:, :, j0:j1] += d_s.transpose(-1, -2) @ qi
        d_coef = rearrange(d_coef, "(b h) f 1 -> b h f", b=B).sum(0) * sigma
        return dq, dk, dv, d_coef, d_bias.sum(0), None, None, None, None


def _phi(qi: Tensor, kj: Tensor, coef: Tensor, bias_bh: Tensor, keep_basis: bool = False):
    """The learned function of one tile's scores, ``[B, H, n, m]`` (and the signed basis
    ``[B H, 2F, n m]`` when ``keep_basis``)."""
    B, H, n, m = qi.shape[0], qi.shape[1], qi.shape[2], kj.shape[2]
    s = rearrange(qi @ kj.transpose(-1, -2), "b h n m -> (b h) (n m)")
    basis = _harmonics(s, coef.shape[-1] // 2)
    phi = torch.baddbmm(bias_bh, coef, basis).view(B, H, n, m)
    return (phi, basis) if keep_basis else phi


def karat_parallel(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    coefficients: Tensor,
    bias: Tensor,
    *,
    eps: float = 1e-6,
    causal: bool = True,
    key_mask: Tensor | None = None,
    block_sizes: tuple[int, int] = BLOCK_SIZES,
) -> Tensor:
    """Returns ``o: [B, Tq, H, V]``; same arguments and maths as ``karat_reference``.

    ``block_sizes``: ``(query rows, keys)`` of one tile (a speed setting; the result is the same).
    """
    H, G, K = q.shape[2], k.shape[2], q.shape[3]
    dtype = q.dtype
    wide = wide_dtype(dtype)
    q = rearrange(q, "b t h k -> b h t k").to(wide) / math.sqrt(K)
    k, v = (rearrange(t, "b s g k -> b g s k").to(wide).repeat_interleave(H // G, dim=1) for t in (k, v))
    tensors = (q.contiguous(), k.contiguous(), v.contiguous(), coefficients.to(wide), bias.to(wide))
    o = _KArAtFunction.apply(*tensors, eps, causal, key_mask, tuple(block_sizes))
    return rearrange(o, "b h t v -> b t h v").to(dtype)
