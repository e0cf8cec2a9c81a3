"""Chunkwise-parallel gated linear attention (the fast training form).

Shapes: ``q, k: [B, T, H, K]``, ``v: [B, T, H, V]``, ``log_decay``: ``None``, ``[B, T, H]`` or
``[B, T, H, K]``; state ``S: [B, H, K, V]``; inside: ``N`` chunks of ``C`` steps, ``[B, H, N, C, *]``.

The sequence is cut into chunks of ``C`` steps (GLA, arXiv:2312.06635, section 4). With ``g_t`` the
cumulative log decay since the chunk start (``g`` only decreases), for ``t`` in a chunk::

    o_t = (q_t * exp(g_t)) S_in  +  sum_{s <= t in chunk} (q_t * exp(g_t - g_s)) . k_s  v_s
    S_out = exp(g_C) * S_in + sum_s (k_s * exp(g_C - g_s))^T v_s

Every exponent above is ``<= 0``, so nothing overflows. A per-key-channel decay makes the intra-chunk
score ``sum_k q_tk k_sk exp(g_tk - g_sk)``, which has no matmul form without splitting the exponent
as ``exp(g_t - r) exp(r - g_s)``. Splitting at the middle of the chunk's total decay keeps both
exponents within ``+-|g_C| / 2``; when that is below ``max_exponent`` (default ``log(dtype max) / 4``,
22 in float32) for every chunk, the scores are one matmul. Otherwise (gates that nearly close) the
exactly safe form is used: the chunk is cut again into sub-chunks, pairs of different sub-chunks
split at the boundary ``r`` between them (``s <= r <= t``, both factors ``<= 1``) and use a matmul,
and the ``c x c`` diagonal blocks are formed element by element.

Which form a call needs depends on the data. Eagerly a Python ``if`` picks it; under
``torch.compile`` the choice is a ``torch.cond`` (both forms traced, one run per call), so the chunked
mixers compile as one graph and keep the one-matmul form. No fixed set of matmuls with clamped
exponents replaces the choice exactly: with one split ``r`` per channel, a pair ``s <= t`` near the
chunk start of a channel whose decay spans more than ``2 * max_exponent`` has ``g_t - r`` above the
bound while its true factor ``exp(g_t - g_s)`` may be 1, so a clamp there changes an unmasked score,
and covering every such span needs a number of splits that grows with the decay.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


def linear_attention_chunk(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor | None = None,
    *,
    initial_state: Tensor | None = None,
    chunk_size: int = 64,
    subchunk_size: int = 16,
    max_exponent: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Return ``(o: [B, T, H, V], S: [B, H, K, V])``; equal to the step-by-step reference.

    ``subchunk_size`` and ``max_exponent`` only matter for per-key-channel decays (see the module
    docstring); ``subchunk_size`` is clipped to ``chunk_size`` and must then divide it;
    ``max_exponent=0`` forces the sub-chunked form.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    if T == 0:
        S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(q.dtype)
        return v.new_zeros(B, 0, H, V), S
    C = chunk_size
    sub = min(subchunk_size, C)
    if C % sub:
        raise ValueError(f"subchunk_size={subchunk_size} must divide chunk_size={chunk_size}")
    # A sequence shorter than a chunk is one chunk of its length rounded up to a whole number of
    # sub-chunks: padding T=32 to C=64 would quadruple the C x C work for nothing.
    C = min(C, -(-T // sub) * sub)
    pad = (-T) % C
    if pad:  # zero keys with zero log decay leave the state unchanged
        q, k, v = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (q, k, v))
        if log_decay is not None:
            log_decay = F.pad(log_decay, (0, 0) * (log_decay.dim() - 2) + (0, pad))
    q = rearrange(q, "b (n c) h k -> b h n c k", c=C)
    k = rearrange(k, "b (n c) h k -> b h n c k", c=C)
    v = rearrange(v, "b (n c) h v -> b h n c v", c=C)
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()

    if log_decay is None:
        A = (q @ k.transpose(-1, -2)).masked_fill(~causal, 0.0)
        q_in, k_out, chunk_decay = q, k, None
    elif log_decay.dim() == 3:
        g = rearrange(log_decay, "b (n c) h -> b h n c", c=C).cumsum(-1)
        rel = (g[..., :, None] - g[..., None, :]).masked_fill(~causal, float("-inf"))
        A = (q @ k.transpose(-1, -2)) * rel.exp()
        q_in = q * g.exp()[..., None]
        k_out = k * (g[..., -1:] - g).exp()[..., None]
        chunk_decay = g[..., -1].exp()[..., None, None]  # [B, H, N, 1, 1]
    else:
        g = rearrange(log_decay, "b (n c) h k -> b h n c k", c=C).cumsum(-2)
        if max_exponent is None:
            max_exponent = math.log(torch.finfo(q.dtype).max) / 4
        # split at the middle of the chunk's total decay, both exponents stay within |g_C| / 2
        fits = (g[..., -1, :] >= -2 * max_exponent).all()
        if torch.compiler.is_compiling():  # reading `fits` in Python would break the graph
            A = _scores_in_one_graph(fits, q, k, g, sub)
        elif bool(fits):
            A = _one_matmul_scores(q, k, g)
        else:
            A = _intra_chunk_scores(q, k, g, sub)
        q_in = q * g.exp()
        k_out = k * (g[..., -1:, :] - g).exp()
        chunk_decay = g[..., -1, :].exp()[..., None]  # [B, H, N, K, 1]

    o = A @ v
    U = k_out.transpose(-1, -2) @ v  # [B, H, N, K, V]: each chunk's contribution to the state
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(q.dtype)
    before = []
    # unbind once: indexing U[:, :, n] in the loop would make each backward step allocate all of U.
    decays = [None] * U.shape[2] if chunk_decay is None else chunk_decay.unbind(2)
    for U_n, decay_n in zip(U.unbind(2), decays):
        before.append(S)
        S = (S if decay_n is None else decay_n * S) + U_n
    o = o + q_in @ torch.stack(before, dim=2)
    o = rearrange(o, "b h n c v -> b (n c) h v")[:, :T]
    return o, S


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose gradient is made contiguous: ``torch.cond``'s backward needs both branches'
    input gradients laid out alike, and the one-matmul form's key gradient comes out transposed."""

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.contiguous()


def _scores_in_one_graph(fits: Tensor, q: Tensor, k: Tensor, g: Tensor, sub: int) -> Tensor:
    """The intra-chunk scores as one traceable choice: the one-matmul form where ``fits``, else the
    sub-chunked form (under ``torch.compile``; a Python ``if`` on ``fits`` would break the graph)."""

    def fast(q: Tensor, k: Tensor, g: Tensor) -> Tensor:
        return _one_matmul_scores(*(_ContiguousGrad.apply(t) for t in (q, k, g)))

    def safe(q: Tensor, k: Tensor, g: Tensor) -> Tensor:
        return _intra_chunk_scores(*(_ContiguousGrad.apply(t) for t in (q, k, g)), sub)

    return torch.cond(fits, fast, safe, (q, k, g))


def _one_matmul_scores(q: Tensor, k: Tensor, g: Tensor) -> Tensor:
    """``A[t, s]`` as in :func:`_intra_chunk_scores`, split at the middle of each chunk's decay:
    valid when every chunk's total log decay is at least ``-2 * max_exponent``."""
    C = q.shape[-2]
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    mid = 0.5 * g[..., -1:, :]  # [B, H, N, 1, K]
    return ((q * (g - mid).exp()) @ (k * (mid - g).exp()).transpose(-1, -2)).masked_fill(~causal, 0.0)


def _intra_chunk_scores(q: Tensor, k: Tensor, g: Tensor, sub: int) -> Tensor:
    """``A[t, s] = sum_k q_tk k_sk exp(g_tk - g_sk)`` for ``s <= t`` in each chunk: ``[B, H, N, C, C]``."""
    q, k, g = (rearrange(t, "b h n (i c) k -> b h n i c k", c=sub) for t in (q, k, g))
    ns = q.shape[3]
    tril = torch.ones(sub, sub, dtype=torch.bool, device=q.device).tril()
    rel = (g[..., :, None, :] - g[..., None, :, :]).masked_fill(~tril[:, :, None], float("-inf"))
    diag = (q[..., :, None, :] * k[..., None, :, :] * rel.exp()).sum(-1)  # [B, H, N, I, c, c]
    if ns == 1:
        return diag[..., 0, :, :]
    r = g[..., -1, :]  # [B, H, N, J, K]: cumulative decay at the end of sub-chunk j
    k_hat = k * (r[..., None, :] - g).exp()
    below = torch.ones(ns, ns, dtype=torch.bool, device=q.device).tril(-1)  # sub-chunk i after j
    e = g[..., :, None, :, :] - r[..., None, :, None, :]  # [B, H, N, I, J, c, K]
    q_hat = q[..., :, None, :, :] * e.masked_fill(~below[:, :, None, None], float("-inf")).exp()
    blocks = torch.einsum("bhnijtk,bhnjsk->bhnijts", q_hat, k_hat)
    eye = torch.eye(ns, dtype=torch.bool, device=q.device)[:, :, None, None]
    blocks = torch.where(eye, diag[..., :, None, :, :], blocks)
    return rearrange(blocks, "b h n i j t s -> b h n (i t) (j s)")
