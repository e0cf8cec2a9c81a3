"""RWKV-6 time mixing as a plain loop over time steps (the specification).

Eagle and Finch (arXiv:2404.05892), Finch's ``wkv``, per head::

    o_t = r_t (S_{t-1} + diag(u) k_t^T v_t)
    S_t = diag(w_t) S_{t-1} + k_t^T v_t

Shapes: ``r, k: [B, T, H, K]``, ``v: [B, T, H, V]``, ``log_decay = log w: [B, T, H, K]`` (``<= 0``),
``bonus = u: [H, K]``; state ``S: [B, H, K, V]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rwkv6_recurrent(
    r: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, bonus: Tensor, state: Tensor
) -> tuple[Tensor, Tensor]:
    """One step: ``r, k, log_decay: [B, H, K]``, ``v: [B, H, V]``; returns ``(o: [B, H, V], S)``."""
    kv = torch.einsum("bhk,bhv->bhkv", k, v)
    o = torch.einsum("bhk,bhkv->bhv", r, state + bonus[..., None] * kv)
    return o, log_decay.exp()[..., None] * state + kv


def rwkv6_reference(
    r: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor,
    bonus: Tensor,
    *,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Return ``(o: [B, T, H, V], S: [B, H, K, V])``, ``S`` being the state after the last step."""
    B, T, H, K = r.shape
    V = v.shape[-1]
    S = r.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(r.dtype)
    outs = []
    for t in range(T):
        o, S = rwkv6_recurrent(r[:, t], k[:, t], v[:, t], log_decay[:, t], bonus, S)
        outs.append(o)
    return (torch.stack(outs, dim=1) if outs else v.new_zeros(B, 0, H, V)), S
