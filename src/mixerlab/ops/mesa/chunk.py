"""The Mesa layer's training form: chunked statistics, a batched solve, the GLA chunk op.

Shapes as in :mod:`mixerlab.ops.mesa.reference`; inside, ``N`` chunks of ``C`` steps,
``[B, H, N, C, *]``.

The output ``o_t = x_t H^kv_t`` with ``x_t = (H^kk_t + Lambda)^-1 q_t`` is gated linear attention
read by the query ``x_t`` (keys ``beta k``, values ``v``, scalar decay), so ``H^kv`` is never formed
per token: :func:`~mixerlab.ops.linear_attention.linear_attention_chunk` does it. Only ``H^kk_t``
is needed at every token, and it is built chunk by chunk as in GLA (arXiv:2312.06635, section 4),
with ``g_t`` the cumulative log decay since the chunk start::

    H^kk_t = exp(g_t) H^kk_in + sum_{s <= t in chunk} exp(g_t - g_s) beta_s k_s^T k_s

the sum being one ``[C, C] x [C, K*K]`` matmul per chunk (every exponent ``<= 0``). Then all ``T``
systems are solved at once by Cholesky (``H^kk_t + Lambda`` is symmetric positive definite).

Why a direct solve and not the paper's conjugate gradient (CG, a fixed number of steps each one
more linear-attention pass): on a CPU a batched ``K x K`` Cholesky is cheap next to the passes CG
needs, it is exact (equal to the per-step reference in float64, gradients included, with no
iteration count or tolerance to choose), and its cost does not grow with the conditioning. What
it costs is memory: ``T K^2`` per head for the per-token matrices, which CG avoids.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from mixerlab.ops.linear_attention import linear_attention_chunk
from mixerlab.ops.precision import widen


class _SymmetricSolve(torch.autograd.Function):
    """``x = M^-1 q`` for symmetric positive definite ``M: [..., K, K]`` and ``q: [..., K]``, by Cholesky.

    The backward is the implicit one, ``dq = M^-1 dx`` (one more solve with the saved factor) and
    ``dM = -dq x^T``, instead of differentiating through the factorisation, which costs several
    factorisations' worth and dominated the layer's backward.
    """

    @staticmethod
    def forward(ctx, m: Tensor, q: Tensor) -> Tensor:
        chol = torch.linalg.cholesky(m)
        x = torch.cholesky_solve(q[..., None], chol)[..., 0]
        ctx.save_for_backward(chol, x)
        return x

    @staticmethod
    def backward(ctx, grad_x: Tensor) -> tuple[Tensor, Tensor]:
        chol, x = ctx.saved_tensors
        grad_q = torch.cholesky_solve(grad_x[..., None], chol)[..., 0]
        return -grad_q[..., :, None] * x[..., None, :], grad_q


def mesa_chunk(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor,
    beta: Tensor,
    lam: Tensor,
    *,
    initial_state: tuple[Tensor, Tensor] | None = None,
    chunk_size: int = 64,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Return ``(o: [B, T, H, V], (H^kk, H^kv))``; equal to :func:`mesa_reference`."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    out_dtype = v.dtype
    # Statistics and solves in float32 at least (ops/precision.py: no half-precision Cholesky).
    q, k, v, log_decay, beta, lam = widen(q, k, v, log_decay, beta, lam)
    if initial_state is None:
        h_kk, h_kv = q.new_zeros(B, H, K, K), q.new_zeros(B, H, K, V)
    else:
        h_kk, h_kv = widen(*initial_state)
    bk = beta[..., None] * k
    if T == 0:
        return v.new_zeros(B, 0, H, V).to(out_dtype), (h_kk, h_kv)
    C = chunk_size
    pad = (-T) % C  # zero keys with zero log decay leave H^kk unchanged
    qp, kp, bkp = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (q, k, bk))
    g = rearrange(F.pad(log_decay, (0, 0, 0, pad)), "b (n c) h -> b h n c", c=C).cumsum(-1)
    kp, bkp = (rearrange(t, "b (n c) h k -> b h n c k", c=C) for t in (kp, bkp))
    outer = rearrange(bkp[..., :, None] * kp[..., None, :], "b h n c i j -> b h n c (i j)")
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    rel = (g[..., :, None] - g[..., None, :]).masked_fill(~causal, float("-inf")).exp()
    local = rel @ outer  # [B, H, N, C, K*K]: each token's sum over its own chunk so far
    chunk_decay = g[..., -1].exp()  # [B, H, N]
    state = rearrange(h_kk, "b h i j -> b h (i j)")
    starts = []
    # unbind once: indexing in the loop would make each backward step allocate all of ``local``.
    for last_n, decay_n in zip(local[..., -1, :].unbind(2), chunk_decay.unbind(2)):
        starts.append(state)
        state = decay_n[..., None] * state + last_n
    h_t = local + g.exp()[..., None] * torch.stack(starts, dim=2)[..., None, :]
    h_t = rearrange(h_t, "b h n c (i j) -> b h n c i j", i=K)
    q_blocks = rearrange(qp, "b (n c) h k -> b h n c k", c=C)
    x = _SymmetricSolve.apply(h_t + torch.diag_embed(lam)[None, :, None, None], q_blocks)
    x = rearrange(x, "b h n c k -> b (n c) h k")[:, :T]
    o, h_kv = linear_attention_chunk(x, bk, v, log_decay, initial_state=h_kv, chunk_size=C)
    return o.to(out_dtype), (rearrange(state, "b h (i j) -> b h i j", i=K), h_kv)
