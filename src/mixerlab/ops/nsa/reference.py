"""Native Sparse Attention as a plain loop over queries (the specification).

"Native Sparse Attention" (NSA, arXiv:2502.11089), section 3, with compression blocks and selection
blocks of the same ``block_size`` l and stride l. Per query ``t`` and head:

- compressed: each complete block ``j`` (``(j + 1) l <= t + 1``) becomes one key and one value,
  ``k~_j = sum_i a_i k_{jl+i}``, ``v~_j = sum_i b_i v_{jl+i}`` (learned per head: ``a, b: [H, l]``),
  and ``o_cmp = sum_j softmax_j(q . k~_j / sqrt(K)) v~_j`` (zero while no block is complete);
- selected: the query's own block up to ``t`` and the ``num_selected`` earlier blocks whose
  compressed attention ``p_j`` is largest (ranking by ``p_j`` is ranking by ``q . k~_j``),
  read with one softmax;
- sliding window: the ``window`` last keys up to ``t``.

The output is ``g_cmp o_cmp + g_slc o_slc + g_win o_win`` with gates ``g: [B, Tq, H, 3]`` in
``(0, 1)`` computed by the layer. Shapes: ``q: [B, Tq, H, K]``, ``k, v: [B, Tk, H, K]``; the
queries are the last ``Tq`` of the ``Tk`` positions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _softmax_read(q: Tensor, keys: Tensor, values: Tensor) -> Tensor:
    scores = torch.einsum("bk,bsk->bs", q, keys) / math.sqrt(q.shape[-1])
    return torch.einsum("bs,bsv->bv", torch.softmax(scores, dim=-1), values)


def nsa_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    gates: Tensor,
    compress_k: Tensor,
    compress_v: Tensor,
    *,
    block_size: int,
    num_selected: int,
    window: int,
) -> Tensor:
    B, Tq, H, K = q.shape
    Tk, l = k.shape[1], block_size
    out = q.new_zeros(B, Tq, H, v.shape[-1])
    for t in range(Tq):
        pos = Tk - Tq + t
        complete, own = (pos + 1) // l, pos // l
        for h in range(H):
            qt = q[:, t, h]
            o_win = _softmax_read(
                qt, k[:, max(0, pos - window + 1) : pos + 1, h], v[:, max(0, pos - window + 1) : pos + 1, h]
            )
            readable = torch.zeros(B, pos + 1, dtype=torch.bool, device=q.device)
            readable[:, own * l :] = True
            o_cmp = torch.zeros_like(o_win)
            if complete > 0:
                kc = torch.stack([compress_k[h] @ k[:, j * l : (j + 1) * l, h] for j in range(complete)], 1)
                vc = torch.stack([compress_v[h] @ v[:, j * l : (j + 1) * l, h] for j in range(complete)], 1)
                o_cmp = _softmax_read(qt, kc, vc)  # [B, V]
                chosen = min(num_selected, own)
                if chosen > 0:
                    wide = torch.promote_types(q.dtype, torch.float32)  # as the parallel form's ranking
                    ranks = torch.einsum("bk,bjk->bj", qt.to(wide), kc[:, :own].to(wide))
                    for b in range(B):
                        for j in ranks[b].topk(chosen).indices.tolist():
                            readable[b, j * l : (j + 1) * l] = True
            scores = torch.einsum("bk,bsk->bs", qt, k[:, : pos + 1, h]) / math.sqrt(K)
            weights = torch.softmax(scores.masked_fill(~readable, float("-inf")), dim=-1)
            o_slc = torch.einsum("bs,bsv->bv", weights, v[:, : pos + 1, h])
            g = gates[:, t, h]  # [B, 3]
            out[:, t, h] = g[:, :1] * o_cmp + g[:, 1:2] * o_slc + g[:, 2:] * o_win
    return out
