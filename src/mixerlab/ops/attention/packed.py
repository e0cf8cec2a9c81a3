"""Causal softmax attention over documents packed into one row, in one SDPA call.

"Attention Is All You Need" (arXiv:1706.03762), eq. 1, on variable-length documents laid back to
back (flash-attention's ``cu_seqlens`` layout). Every token carries its document index and its
position inside that document; a query reads a key only when both lie in the same document and
the key is not later, so the ``[Tq, Tk]`` mask is block-diagonal and causal and no score crosses a
document boundary. Equal to :func:`attention_parallel` on each document alone.

Shapes: ``q: [1, Tq, H, K]``, ``k: [1, Tk, G, K]``, ``v: [1, Tk, G, V]`` (grouped-query heads as
in :mod:`.reference`); ``q_doc, q_pos: [Tq]``, ``k_doc, k_pos: [Tk]``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor
from torch.nn.functional import scaled_dot_product_attention


def document_positions(lengths: list[int], device: torch.device) -> tuple[Tensor, Tensor]:
    """``(doc, pos)``, each ``[sum(lengths)]``: every token's document and its position in it."""
    sizes = torch.tensor(lengths, device=device)
    doc = torch.repeat_interleave(torch.arange(len(lengths), device=device), sizes)
    starts = torch.cumsum(sizes, 0) - sizes
    return doc, torch.arange(doc.shape[0], device=device) - starts[doc]


def attention_packed(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    q_doc: Tensor,
    q_pos: Tensor,
    k_doc: Tensor,
    k_pos: Tensor,
    scale: float | None = None,
    causal: bool = True,
) -> Tensor:
    allowed = q_doc[:, None] == k_doc[None, :]  # [Tq, Tk] block-diagonal
    if causal:
        allowed = allowed & (k_pos[None, :] <= q_pos[:, None])
    q, k, v = (rearrange(t, "b t h k -> b h t k") for t in (q, k, v))
    gqa = q.shape[1] != k.shape[1]
    o = scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale, enable_gqa=gqa)
    return rearrange(o, "b h t v -> b t h v")
