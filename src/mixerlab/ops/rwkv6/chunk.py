"""RWKV-6 time mixing on the chunked gated-linear-attention op (the fast training form).

Shapes as in :mod:`mixerlab.ops.rwkv6.reference`.

RWKV-6 reads ``S_{t-1}``, the state before token ``t`` is added and before ``w_t`` decays it,
while :func:`~mixerlab.ops.linear_attention.linear_attention_chunk` reads ``q_t S_t``. Shifting the
queries one step earlier makes the two coincide exactly: over ``T + 1`` steps the op is fed a
first step with zero key and zero log decay (it leaves the initial state unchanged) and then the
keys, values and decays of steps ``0 .. T-1``, while the queries are ``r_0 .. r_{T-1}`` followed by
a zero. Output ``t`` of the op is then ``r_t S_{t-1}`` and its final state is ``S_{T-1}``. The
bonus ``(r_t . (u * k_t)) v_t`` is added element-wise.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mixerlab.ops.linear_attention import linear_attention_chunk


def rwkv6_chunk(
    r: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor,
    bonus: Tensor,
    *,
    initial_state: Tensor | None = None,
    chunk_size: int = 64,
    subchunk_size: int = 16,
) -> tuple[Tensor, Tensor]:
    """Return ``(o: [B, T, H, V], S: [B, H, K, V])``; equal to :func:`rwkv6_reference`."""
    T = r.shape[1]
    after = (0, 0, 0, 0, 0, 1)  # one step appended / prepended along T of a [B, T, H, *] tensor
    before = (0, 0, 0, 0, 1, 0)
    o, S = linear_attention_chunk(
        F.pad(r, after),
        F.pad(k, before),
        F.pad(v, before),
        F.pad(log_decay, before),
        initial_state=initial_state,
        chunk_size=chunk_size,
        subchunk_size=subchunk_size,
    )
    o = o[:, :T] + (r * bonus * k).sum(-1, keepdim=True) * v
    return o, S
