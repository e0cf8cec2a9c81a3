"""MemMamba's note pool for a whole sequence at once (the fast training form).

Same result as :mod:`.reference`, with no loop over time. The pool at step ``t`` holds the last
``P`` notes of the list "carried-in pool, then the call's salient notes in order", so:

1. **Compact**: the carried-in pool fills slots ``0..P-1`` of a buffer and the ``m``-th salient
   note of the call (counted from 1) goes to slot ``P + m - 1``, one scatter.
2. **Window**: with ``c_t`` the number of salient notes up to and including ``t``, the pool at
   ``t`` is buffer slots ``c_t .. c_t + P - 1`` (one gather of ``[B, T, P]`` slots); a slot is
   valid where it holds a carried note marked ``filled`` or a note of the call.
3. **Attend**: a masked softmax over those ``P`` slots per head; a step whose pool is empty reads 0.

Cost ``O(T P K)`` time and memory (the gathered windows), linear in ``T``.

Shapes: ``q, notes_in: [B, T, H, K]``; ``salient: [B, T]`` (bool); ``pool: [B, P, H, K]``;
``filled: [B, P]``; buffer ``[B, P + T, H, K]``; windows ``[B, T, P, H, K]``.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor


def note_pool_parallel(
    q: Tensor, notes_in: Tensor, salient: Tensor, pool: Tensor, filled: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    batch, T, H, K = q.shape
    P = pool.shape[1]
    if P == 0:
        return torch.zeros_like(q), pool, filled
    count = torch.cumsum(salient.long(), dim=1)  # [B, T]  c_t
    # slot of each salient note; non-salient tokens go to one spare slot at the end, dropped below
    slot = torch.where(salient, P + count - 1, torch.full_like(count, P + T))  # [B, T]
    buffer = torch.cat([pool, notes_in.new_zeros(batch, T + 1, H, K)], dim=1)  # [B, P + T + 1, H, K]
    # scatter_add into zeros is a copy for the salient slots (each receives one note)
    index = slot[:, :, None, None].expand(batch, T, H, K)
    buffer = buffer.scatter_add(1, index, notes_in)
    total = count[:, -1:] if T else count.new_zeros(batch, 1)  # [B, 1]
    new_valid = torch.arange(T, device=q.device)[None, :] < total  # [B, T]
    valid = torch.cat([filled > 0, new_valid], dim=1)  # [B, P + T]
    window = count[:, :, None] + torch.arange(P, device=q.device)  # [B, T, P]  slots c_t .. c_t+P-1
    # gather on the flat [B, slots, H K] buffer: its backward scatters into that buffer only
    flat = rearrange(buffer, "b s h k -> b s (h k)")
    keys = torch.gather(flat, 1, window.flatten(1)[..., None].expand(batch, T * P, H * K))
    keys = rearrange(keys, "b (t p) (h k) -> b t p h k", p=P, h=H)  # [B, T, P, H, K]
    mask = torch.gather(valid, 1, window.flatten(1)).view(batch, T, P)  # [B, T, P]
    scores = torch.einsum("bthk,btphk->bthp", q, keys) / math.sqrt(K)
    scores = scores.masked_fill(~mask[:, :, None, :], float("-inf"))
    # masked softmax that reads 0 on an empty pool instead of NaN; the shift does not change
    # the weights, so it is taken without gradient
    top = scores.detach().amax(dim=-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    expo = torch.exp(scores - top)  # exp(-inf) = 0 on empty slots
    weights = expo / expo.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(expo.dtype).tiny)
    out = torch.einsum("bthp,btphk->bthk", weights, keys)
    end = total[:, 0]  # the pool after the call: slots c_T .. c_T + P - 1
    last = end[:, None] + torch.arange(P, device=q.device)  # [B, P]
    new_valid = torch.gather(valid, 1, last)  # [B, P]
    new_pool = torch.gather(buffer, 1, last[..., None, None].expand(batch, P, H, K))
    # an empty slot holds zeros and passes no gradient back to what the buffer had there
    new_pool = new_pool * new_valid[..., None, None]
    return out, new_pool, new_valid.to(filled.dtype)
