"""AHN's mixer without a loop over tokens: banded windowed SDPA plus a chunked decayed-memory scan.

The memory write stream is the positions leaving the window, in order; the query of position
``j`` reads the memory after position ``j - W`` was written. So the memory part is a plain
decayed linear-attention scan over positions ``0 .. L-W`` whose ``i``-th query is ``q_{i+W}``;
positions ``j < W`` read the incoming memory. The scan is chunked (a loop over chunks only):
within a chunk a masked ``[C, C]`` matrix of gate-decayed scores, across chunks the memory matrix.

Shapes as in :mod:`mixerlab.ops.ahn.reference`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixerlab.ops.attention import attention_local_chunk


def decayed_memory_chunk(
    q: Tensor, k: Tensor, v: Tensor, log_a: Tensor, M0: Tensor, *, chunk_size: int = 64
) -> tuple[Tensor, Tensor]:
    """``M_i = a_i M_{i-1} + k_i v_i^T``, ``o_i = q_i M_i``: ``q, k: [B, N, H, K]``, ``v: [B, N, H, V]``,
    ``log_a: [B, N, H]`` (<= 0), ``M0: [B, H, K, V]``. Returns ``o: [B, N, H, V]`` and ``M_{N-1}``."""
    M, outs = M0, []
    # split, not slice: each slice's backward would zero-fill a full-length gradient (O(N^2))
    for qc, kc, vc, la in zip(*(t.split(chunk_size, dim=1) for t in (q, k, v, log_a))):
        b = torch.cumsum(la, dim=1)  # [B, C, H]: log of the decay since the chunk start
        C = b.shape[1]
        inter = torch.einsum("bthk,bhkv->bthv", qc * torch.exp(b)[..., None], M)
        causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()  # [t, s]: s <= t
        gaps = (b[:, :, None] - b[:, None, :]).masked_fill(~causal[None, :, :, None], float("-inf"))
        scores = torch.einsum("bthk,bshk->btsh", qc, kc) * torch.exp(gaps)
        outs.append(inter + torch.einsum("btsh,bshv->bthv", scores, vc))
        to_end = torch.exp(b[:, -1:] - b)  # [B, C, H]: decay from each write to the chunk end
        M = torch.exp(b[:, -1])[..., None, None] * M + torch.einsum(
            "bshk,bshv->bhkv", kc * to_end[..., None], vc
        )
    o = torch.cat(outs, dim=1) if outs else v.new_zeros(v.shape)
    return o, M


def ahn_chunk(
    q_att: Tensor,
    k_att: Tensor,
    v: Tensor,
    q_mem: Tensor,
    k_mem: Tensor,
    log_a: Tensor,
    M0: Tensor,
    *,
    window: int,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor]:
    T, L = q_att.shape[1], k_att.shape[1]
    past = L - T
    # banded blocks: O(L W) instead of a masked dense O(L^2) SDPA (measured forward+backward of
    # the layer: 1.8x faster at L=1024, 3.3x at L=4096, W=64)
    att = attention_local_chunk(q_att, k_att, v, window=window)
    writes = max(0, L - window + 1)  # positions 0 .. L-W leave the window during this call
    parts = []
    early = min(window, L) - past  # new positions j < W: nothing written yet, read M0
    if early > 0:
        parts.append(torch.einsum("bthk,bhkv->bthv", q_mem[:, :early], M0))
    M = M0
    if writes > 0:
        readers = q_mem[:, q_mem.shape[1] - (L - window) :] if window < L else q_mem[:, :0]
        # The last write has no reader in this call (it is read by the next token).
        queries = torch.cat([readers, readers.new_zeros(readers[:, :1].shape)], dim=1)
        mem, M = decayed_memory_chunk(
            queries, k_mem[:, :writes], v[:, :writes], log_a[:, :writes], M0, chunk_size=chunk_size
        )
        parts.append(mem[:, : writes - 1])
    return att + torch.cat(parts, dim=1), M
