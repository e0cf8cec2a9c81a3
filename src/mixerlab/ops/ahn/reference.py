"""AHN's mixer one token at a time (the specification).

Shapes: the new tokens' queries ``q_att, q_mem: [B, T, H, K]``; keys, values and gates of the kept
window followed by the new tokens, ``k_att, k_mem: [B, L, H, K]``, ``v: [B, L, H, V]``, ``log_a:
[B, L, H]`` with ``L = past + T``; memory ``M0: [B, H, K, V]`` holding every token before those ``L``.
``k_att``/``q_att`` are the (rotated) attention keys/queries, ``k_mem``/``q_mem`` the memory's.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def decayed_memory_reference(
    q: Tensor, k: Tensor, v: Tensor, log_a: Tensor, M0: Tensor
) -> tuple[Tensor, Tensor]:
    """``M_i = a_i M_{i-1} + k_i v_i^T``, ``o_i = q_i M_i``, one step per token. Shapes as in chunk."""
    M, outs = M0, []
    for i in range(k.shape[1]):
        M = torch.exp(log_a[:, i])[..., None, None] * M + torch.einsum("bhk,bhv->bhkv", k[:, i], v[:, i])
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, i], M))
    o = torch.stack(outs, dim=1) if outs else v.new_zeros(v.shape)
    return o, M


def ahn_reference(
    q_att: Tensor,
    k_att: Tensor,
    v: Tensor,
    q_mem: Tensor,
    k_mem: Tensor,
    log_a: Tensor,
    M0: Tensor,
    *,
    window: int,
) -> tuple[Tensor, Tensor]:
    """Outputs ``[B, T, H, V]`` of the new tokens and the memory after the last one."""
    T, L = q_att.shape[1], k_att.shape[1]
    past = L - T
    scale = 1.0 / math.sqrt(q_att.shape[-1])
    M, outs = M0, []
    for j in range(past, L):
        lo = max(0, j - window + 1)
        scores = torch.einsum("bhk,bshk->bhs", q_att[:, j - past], k_att[:, lo : j + 1]) * scale
        att = torch.einsum("bhs,bshv->bhv", torch.softmax(scores, dim=-1), v[:, lo : j + 1])
        mem = torch.einsum("bhk,bhkv->bhv", q_mem[:, j - past], M)
        outs.append(att + mem)
        # The next query no longer sees position j - W + 1: the memory takes it over.
        e = j - window + 1
        if e >= 0:
            write = torch.einsum("bhk,bhv->bhkv", k_mem[:, e], v[:, e])
            M = torch.exp(log_a[:, e])[..., None, None] * M + write
    return torch.stack(outs, dim=1), M
