"""Chunkwise-parallel mLSTM with the max-state stabiliser (the fast form).

Same maths, state and stabiliser convention as :mod:`mixerlab.ops.mlstm.reference`; the
decomposition follows the authors' "chunkwise native" kernel (mlstm_kernels): a short loop over
chunks carries the boundary states, then every chunk's outputs are computed at once with batched
matmuls.

Shapes: ``q, k: [B, T, H, K]``; ``v: [B, T, H, V]``; ``log_i, log_f: [B, T, H]``; inside, chunks
are ``[B, H, N, L, .]`` with ``N`` chunks of ``L`` steps. Within a chunk, ``b_t`` is the cumulative
log forget gate up to step ``t``. Step ``t`` of a chunk entered with state ``(C, n, m)`` has

    log-weight of the carried state     b_t + m
    log-weight of step s <= t           D_ts = b_t - b_s + log_i_s
    stabiliser                          m_t = max(b_t + m, max_s D_ts)

which is the recurrent ``m_t`` unrolled (max distributes over +), so outputs and boundary states
equal the reference's step by step, not only up to the ``exp(-m)`` scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from mixerlab.ops.mlstm.reference import MLSTMState


def mlstm_chunk(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_i: Tensor,
    log_f: Tensor,
    *,
    state: MLSTMState | None = None,
    chunk_size: int = 64,
    eps: float = 1e-6,
) -> tuple[Tensor, MLSTMState]:
    B, T, H, K = q.shape
    V = v.shape[-1]
    if state is None:
        C0, n0, m0 = q.new_zeros(B, H, K, V), q.new_zeros(B, H, K), q.new_zeros(B, H)
    else:
        C0, n0, m0 = state
    if T == 0:
        return v.new_zeros(B, 0, H, V), (C0, n0, m0)
    L = chunk_size
    N = -(-T // L)
    pad = N * L - T
    scale = K**-0.5

    # Padded steps get forget = 1 and input = 0, so they leave the final state unchanged.
    q, k, v = (F.pad(rearrange(t, "b t h k -> b h t k"), (0, 0, 0, pad)) for t in (q, k, v))
    log_i = F.pad(rearrange(log_i, "b t h -> b h t"), (0, pad), value=float("-inf"))
    log_f = F.pad(rearrange(log_f, "b t h -> b h t"), (0, pad))
    q, k, v = (rearrange(t, "b h (n l) k -> b h n l k", l=L) for t in (q, k, v))
    log_i = rearrange(log_i, "b h (n l) -> b h n l", l=L)
    b = rearrange(log_f, "b h (n l) -> b h n l", l=L).cumsum(-1)  # [B, H, N, L]

    # Each chunk's own contribution to the state at its end, stabilised by its own max.
    g = b[..., -1]  # [B, H, N] total log forget over the chunk
    a = g[..., None] - b + log_i  # [B, H, N, L]
    a_max = a.amax(-1)  # [B, H, N]
    k_w = k * torch.exp(a - a_max[..., None])[..., None]
    U = k_w.transpose(-1, -2) @ v  # [B, H, N, K, V]
    u = k_w.sum(-2)  # [B, H, N, K]

    C_in, n_in, m_in = [], [], []
    C, n, m = C0, n0, m0
    # unbind once: indexing [:, :, c] under autograd would zero-fill a full-size gradient per chunk.
    for g_c, a_c, U_c, u_c in zip(g.unbind(2), a_max.unbind(2), U.unbind(2), u.unbind(2)):
        C_in.append(C)
        n_in.append(n)
        m_in.append(m)
        m_new = torch.maximum(g_c + m, a_c)
        carry = torch.exp(g_c + m - m_new)
        fresh = torch.exp(a_c - m_new)
        C = carry[..., None, None] * C + fresh[..., None, None] * U_c
        n = carry[..., None] * n + fresh[..., None] * u_c
        m = m_new
    C_in = torch.stack(C_in, dim=2)  # [B, H, N, K, V]
    n_in = torch.stack(n_in, dim=2)  # [B, H, N, K]
    m_in = torch.stack(m_in, dim=2)  # [B, H, N]

    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    D = (b[..., :, None] - b[..., None, :] + log_i[..., None, :]).masked_fill(~causal, float("-inf"))
    m_inter = b + m_in[..., None]  # [B, H, N, L]
    m_row = torch.maximum(m_inter, D.amax(-1))  # [B, H, N, L]
    q = q * scale
    S = (q @ k.transpose(-1, -2)) * torch.exp(D - m_row[..., None])  # [B, H, N, L, L]
    q_w = q * torch.exp(m_inter - m_row)[..., None]
    num = q_w @ C_in + S @ v  # [B, H, N, L, V]
    den = (q_w @ n_in[..., None]).squeeze(-1) + S.sum(-1)  # [B, H, N, L]
    h = num / (torch.maximum(den.abs(), torch.exp(-m_row)) + eps)[..., None]
    h = rearrange(h, "b h n l v -> b (n l) h v")[:, :T]
    return h, (C, n, m)
