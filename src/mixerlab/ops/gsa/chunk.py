"""Gated slot attention in two chunked passes (the fast training form).

Shapes as in :mod:`mixerlab.ops.gsa.reference`; inside, ``N`` chunks of ``C`` steps.

GSA is two gated-linear-attention passes sharing the forget gate:

1. the key slots, read by the query: with ``S = K_t^T: [K, M]``, ``S_t = S_{t-1} diag(alpha_t) +
   k_t^T (1 - alpha_t)`` and ``K_t q_t = q_t S_t``; the decay sits on the *value* side of this
   state, which :func:`value_decay_chunk` handles;
2. the value slots, read by ``p_t = softmax(K_t q_t)``: ``V_t = diag(alpha_t) V_{t-1} +
   (1 - alpha_t)^T v_t`` and ``o_t = p_t V_t``, GLA with a key-side decay, which is
   :func:`~mixerlab.ops.linear_attention.linear_attention_chunk`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from mixerlab.ops.linear_attention import linear_attention_chunk


def value_decay_chunk(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor,
    *,
    initial_state: Tensor | None = None,
    chunk_size: int = 16,
) -> tuple[Tensor, Tensor]:
    """``S_t = S_{t-1} diag(exp(log_decay_t)) + k_t^T v_t``, ``o_t = q_t S_t``; the decay is over the
    value channels (``q, k: [B, T, H, K]``, ``v, log_decay: [B, T, H, V]``, ``S: [B, H, K, V]``).

    With ``g`` the cumulative log decay since the chunk start, ``o_t = (q_t S_in) * exp(g_t) +
    sum_{s <= t in chunk} (q_t . k_s) v_s * exp(g_t - g_s)``. The intra-chunk pairs are formed per
    value channel (``[C, C, V]`` per chunk), so every exponent is ``<= 0`` however small the decay.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(q.dtype)
    if T == 0:
        return v.new_zeros(B, 0, H, V), S
    C = chunk_size
    pad = (-T) % C
    if pad:  # zero keys with zero log decay leave the state unchanged
        q, k, v, log_decay = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (q, k, v, log_decay))
    q, k, v, g = (rearrange(t, "b (n c) h d -> b h n c d", c=C) for t in (q, k, v, log_decay))
    g = g.cumsum(-2)
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    A = (q @ k.transpose(-1, -2)).masked_fill(~causal, 0.0)  # [B, H, N, C, C]
    rel = (g[..., :, None, :] - g[..., None, :, :]).masked_fill(~causal[..., None], float("-inf"))
    o = torch.einsum("bhnts,bhnsv,bhntsv->bhntv", A, v, rel.exp())
    U = k.transpose(-1, -2) @ (v * (g[..., -1:, :] - g).exp())  # [B, H, N, K, V]
    before = []
    for U_n, g_n in zip(U.unbind(2), g[..., -1, :].unbind(2)):
        before.append(S)
        S = S * g_n.exp()[..., None, :] + U_n
    o = o + (q @ torch.stack(before, dim=2)) * g.exp()
    return rearrange(o, "b h n c v -> b (n c) h v")[:, :T], S


def gsa_chunk(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_alpha: Tensor,
    *,
    key_slots: Tensor | None = None,
    value_slots: Tensor | None = None,
    chunk_size: int = 16,
) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``(o: [B, T, H, V], key_slots, value_slots)``; equal to :func:`gsa_reference`."""
    write = -torch.expm1(log_alpha)  # 1 - alpha, exact when alpha is near 1
    S_k = None if key_slots is None else key_slots.transpose(-1, -2)
    scores, S_k = value_decay_chunk(q, k, write, log_alpha, initial_state=S_k, chunk_size=chunk_size)
    p = torch.softmax(scores, dim=-1)  # [B, T, H, M]
    o, S_v = linear_attention_chunk(
        p, write, v, log_alpha, initial_state=value_slots, chunk_size=chunk_size, subchunk_size=chunk_size
    )
    return o, S_k.transpose(-1, -2), S_v
