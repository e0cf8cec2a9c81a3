"""Chunkwise-parallel delta rule with a diagonal-plus-rank-one transition (RWKV-7, arXiv:2503.14456).

The general form, in the ``[K, V]`` state layout shared with ``ops.delta_rule``::

    S_t = diag(exp(log_w_t)) S_{t-1} + b_t (a_t^T S_{t-1}) + k_t v_t^T,      o_t = S_t^T (q_t * scale)

RWKV-7 is ``a = -kappa``, ``b = kappa * a_rwkv``; Kimi Delta Attention and Comba map onto it too
(``ops.kda``, ``ops.comba``). This generalises ``ops.delta_rule.chunk``'s WY / UT transform: inside
a chunk, with ``G_t`` the per-channel cumulative log-decay (``G_0 = 0``) and ``S`` the state
entering the chunk, the rank-one reads ``u_t^T = a_t^T S_{t-1}`` solve a unit lower-triangular
system::

    (I - A_ab) u = A_ak V + diag(a exp(G_{t-1})) S
    A_xy[t, i]   = sum_c x_tc exp(G_{t-1,c} - G_ic) y_ic      (i < t)

so ``u = U + W S`` with ``[U | W] = (I - A_ab)^{-1} [A_ak V | a exp(G_{t-1})]``, and then::

    o_t = (q_t exp(G_t))^T S + sum_{i<=t} Q_b[t, i] u_i + Q_k[t, i] v_i
    Q_y[t, i] = sum_c q_tc exp(G_tc - G_ic) y_ic      (i <= t)
    S'  = exp(G_C) S + sum_i exp(G_C - G_i) (b_i u_i^T + k_i v_i^T)

The decay is per channel, so the pairwise factors ``exp(G_t - G_i)`` are formed as ``[C, C, K]``
tensors with the masked entries set to ``-inf`` *before* ``exp``: only non-positive numbers are
exponentiated, however strong the decay (a factored ``exp(G_t) exp(-G_i)`` overflows). That costs
``C`` times the memory of the inputs, so chunks are small (16 by default in the layers); a caller
whose decay is bounded below (RWKV-7) passes the bound and gets plain matmuls instead.

Shapes: ``q, k, a, b: [B, T, H, K]``, ``log_w: [B, T, H, K]`` or ``[B, T, H, 1]`` (one decay per
head, whose pairwise factors are then only ``[C, C]``), ``v: [B, T, H, V]``, state ``[B, H, K, V]``; inside,
chunks are ``[B, H, N, C, *]``. ``T`` is zero-padded to a multiple of ``C``: a padded step has
``log_w = k = a = b = 0`` and leaves the state unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from mixerlab.ops.contiguous_grad import contiguous_grad
from mixerlab.ops.precision import widen

_MAX_FACTORED_EXPONENT = 20.0


def _pair_decay(G_row: Tensor, G_col: Tensor, keep: Tensor) -> Tensor:
    """``exp(G_row[t] - G_col[i])`` per channel where ``keep[t, i]``, else 0: ``[B, H, N, C, C, K]``."""
    diff = G_row[..., :, None, :] - G_col[..., None, :, :]
    return torch.exp(diff.masked_fill(~keep[:, :, None], float("-inf")))


def rwkv7_chunk(
    q: Tensor,
    log_w: Tensor,
    k: Tensor,
    v: Tensor,
    a: Tensor,
    b: Tensor,
    *,
    state: Tensor | None = None,
    scale: float = 1.0,
    chunk_size: int = 16,
    min_log_decay: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Returns ``(o: [B, T, H, V], final state: [B, H, K, V])``; same maths as the references.

    ``min_log_decay``: a lower bound the caller guarantees on every ``log_w`` (RWKV-7's is
    ``-e^{-0.5}``). When ``chunk_size * |bound|`` is at most 20 the pairwise decays are factored
    into matmuls (``exp(-G)`` stays below ``e^20``); otherwise, or without a bound, they are
    formed safely as ``[C, C, K]`` tensors.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    C = chunk_size
    q, log_w, k, a, b = (contiguous_grad(t) for t in (q, log_w, k, a, b))
    pad = (-T) % C
    if pad:
        q, log_w, k, v, a, b = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (q, log_w, k, v, a, b))
    q, log_w, k, v, a, b = (rearrange(t, "b (n c) h d -> b h n c d", c=C) for t in (q, log_w, k, v, a, b))
    q = q * scale

    G = log_w.cumsum(-2)  # [B, H, N, C, K], inclusive
    G_prev = G - log_w  # exclusive: the decay applied before step t's rank-one read
    idx = torch.arange(C, device=q.device)
    strict = idx[:, None] > idx[None, :]
    causal = idx[:, None] >= idx[None, :]
    if log_w.shape[-1] == 1:
        # one decay per head (Comba, the gated delta rule): the pairwise factors are [C, C]
        D = _pair_decay(G_prev, G, strict)[..., 0]
        E = _pair_decay(G, G, causal)[..., 0]
        bt, kt = b.transpose(-1, -2), k.transpose(-1, -2)
        A_ab, A_ak, Q_b, Q_k = (a @ bt) * D, (a @ kt) * D, (q @ bt) * E, (q @ kt) * E
    elif min_log_decay is not None and -min_log_decay * C <= _MAX_FACTORED_EXPONENT:
        # a bounded decay keeps exp(-G_i) small inside a chunk: the pairwise factors split into
        # exp(G_t) exp(-G_i) and every product is a plain matmul (no [C, C, K] tensor)
        inv = torch.exp(-G)
        a_in, q_decayed = a * torch.exp(G_prev), q * torch.exp(G)
        b_back, k_back = (b * inv).transpose(-1, -2), (k * inv).transpose(-1, -2)
        A_ab, A_ak = (a_in @ b_back) * strict, (a_in @ k_back) * strict
        Q_b, Q_k = (q_decayed @ b_back) * causal, (q_decayed @ k_back) * causal
    else:
        D = _pair_decay(G_prev, G, strict)  # exp(G_{t-1} - G_i), i < t
        E = _pair_decay(G, G, causal)  # exp(G_t - G_i), i <= t
        A_ab = torch.einsum("...tc,...tic,...ic->...ti", a, D, b)
        A_ak = torch.einsum("...tc,...tic,...ic->...ti", a, D, k)
        Q_b = torch.einsum("...tc,...tic,...ic->...ti", q, E, b)
        Q_k = torch.einsum("...tc,...tic,...ic->...ti", q, E, k)

    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    rhs = torch.cat([A_ak @ v, a * torch.exp(G_prev)], dim=-1)
    # the UT transform runs in float32 for half-precision inputs (no triangular solve on the CPU)
    UW = torch.linalg.solve_triangular(*widen(eye - A_ab, rhs), upper=False, unitriangular=True).to(rhs.dtype)
    U, W = UW.split([V, K], dim=-1)
    G_last = G[..., -1:, :]  # [B, H, N, 1, K]
    q_in = q * torch.exp(G)
    o_local = Q_k @ v  # the part of each output that does not depend on the incoming state
    tail = torch.exp(G_last - G)
    b_out = (b * tail).transpose(-1, -2)  # [B, H, N, K, C]
    kv_out = (k * tail).transpose(-1, -2) @ v  # [B, H, N, K, V]
    chunk_decay = rearrange(torch.exp(G_last), "b h n one k -> b h n k one")

    S = q.new_zeros(B, H, K, V) if state is None else state
    # unbind once: indexing chunk n of a big tensor inside the loop would make autograd allocate
    # a full-size zero gradient per chunk
    per_chunk = zip(
        *(t.unbind(2) for t in (U, W, q_in, Q_b, o_local, b_out, kv_out, chunk_decay)), strict=True
    )
    outs = []
    for U_n, W_n, q_n, Q_b_n, o_n, b_out_n, kv_n, decay_n in per_chunk:
        u = U_n + W_n @ S  # [B, H, C, V]
        outs.append(q_n @ S + Q_b_n @ u + o_n)
        S = decay_n * S + b_out_n @ u + kv_n
    o = rearrange(torch.stack(outs, dim=2), "b h n c v -> b (n c) h v")
    return o[:, :T], S
