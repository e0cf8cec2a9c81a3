"""Mamba-3's SSM, chunked: two calls of Mamba-2's SSD (:func:`mixerlab.ops.ssd.ssd_chunk`).

Rotations first (the "RoPE trick", sec. 4): in the frame turned back by the running angle
``Phi_t = sum_{i<=t} dt_i theta_i``, the state ``h~_t = rot(h_t, -Phi_t)`` obeys a real
recurrence with scalar decay, and ``y_t = h_t C_t = h~_t C~_t`` with ``B~_t = rot(B_t, -Phi_t)``,
``C~_t = rot(C_t, -Phi_t)``. Then, the recurrence being linear in its inputs, the trapezoid's
two input terms run as two SSDs that share decays and ``C~`` and add up: ``gamma_t x_t B~_t^T``,
and ``beta_t x_{t-1} B~_{t-1}^T`` on inputs shifted by one step (the first from the state).
The incoming state enters the first only; the final state is turned back by ``+Phi_T``.
Heads are folded into the batch (``B~`` is per head, since the angle scales with ``dt``); each
SSD runs with ``dt' = -A dt``, ``A' = -1`` and inputs divided by ``-A``, which gives its decay
``exp(dt A)`` and its input scale (so ``A < 0`` is required, as the layer's ``-exp(A_log)``).
Shapes and state as in :mod:`mixerlab.ops.mamba3.reference`.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from mixerlab.ops.mamba3.reference import Mamba3State, rotate
from mixerlab.ops.ssd import ssd_chunk


def mamba3_chunk(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    lam: Tensor,
    theta: Tensor,
    B_: Tensor,
    C_: Tensor,
    *,
    state: Mamba3State,
    chunk_size: int = 64,
) -> tuple[Tensor, Mamba3State]:
    """Returns ``(y: [B, T, H, P], new state)``; same maths as the reference."""
    h0, prev_x, prev_b = state
    Bsz, T, H, _ = x.shape
    phi = torch.cumsum(dt[..., None] * theta[:, :, None, :], dim=1)  # [B, T, H, N/2]
    b_rot = rotate(B_[:, :, None, :], -phi)  # [B, T, H, N]
    c_rot = rotate(C_[:, :, None, :], -phi)
    b_prev = torch.cat([prev_b[:, None, None, :].expand(Bsz, 1, H, -1), b_rot[:, :-1]], dim=1)
    x_prev = torch.cat([prev_x[:, None], x[:, :-1]], dim=1)
    alpha = torch.exp(dt * A)
    neg_a = -A  # [H], positive
    x_now = x * (lam / neg_a)[..., None]  # gamma / dt' = lam / (-A)
    x_back = x_prev * ((1 - lam) * alpha / neg_a)[..., None]  # beta / dt'

    def fold(t: Tensor) -> Tensor:  # [B, T, H, *] -> [(B H), T, *]
        return rearrange(t, "b t h ... -> (b h) t ...")

    dt_f = fold(dt * neg_a)[..., None]  # [(B H), T, 1]
    one = -torch.ones(1, dtype=x.dtype, device=x.device)
    c_f = fold(c_rot)
    y1, s1 = ssd_chunk(
        fold(x_now)[:, :, None],
        dt_f,
        one,
        fold(b_rot),
        c_f,
        state=rearrange(h0, "b h p n -> (b h) 1 p n"),
        chunk_size=chunk_size,
    )
    y2, s2 = ssd_chunk(fold(x_back)[:, :, None], dt_f, one, fold(b_prev), c_f, chunk_size=chunk_size)
    y = rearrange(y1 + y2, "(b h) t 1 p -> b t h p", b=Bsz)
    h = rotate(rearrange(s1 + s2, "(b h) 1 p n -> b h p n", b=Bsz), phi[:, -1, :, None, :])
    return y, (h, x[:, -1], B_[:, -1])
