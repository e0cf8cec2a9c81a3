"""H3's SSM over key-value outer products, read out by the query, in chunks (no ``K*K`` channels).

H3 runs one diagonal SSM (shared per head) on every channel ``x_t[i, j] = k_t[i] v_t[j]`` and reads
``o_t[j] = sum_i q_t[i] y_t[i, j]``. Unrolled from the chunk start ``t0`` (state ``h`` after
``t0 - 1``), with ``K[l] = 2 Re(sum_m C_m dB_m dA_m^l)`` the SSM kernel::

    o_t = sum_{t0<=s<=t} (K[t-s] + D [s=t]) (q_t . k_s) v_s
          + Re(sum_{i,m} q_t[i] 2 C_m dA_m^(t-t0+1) h[i, :, m])
    h'  = dA^c h + sum_s dA^(t0+c-1-s) dB_m k_s[i] v_s[j]

i.e. a Toeplitz-masked linear attention inside the chunk plus two real matmuls against the
``[K M 2, K]`` state per chunk. This never materialises the ``[B, T, H, K*K]`` channel tensor that
the FFT form transforms, so it costs ``O(T H K^2 M)`` matmul FLOPs and ``O(T H K + T/c H K^2 M)``
memory. Two ``[B, H, c, K*2M]`` operands per chunk (the read-out and the feed) would be kept for
the backward pass, O(T H K M) in all (19.5 GB at L=16k, D=256, 4 heads, M=32), so each chunk is
recomputed in the backward pass instead (``checkpoint=False`` keeps them). Only non-negative
powers of ``dA`` (``|dA| < 1``) appear, so nothing overflows.

Shapes: ``q, k, v: [B, T, H, K]``; ``dtA, dB, C: [H, M]`` complex; ``D: [H]``;
``h0: [B, H, K*K, M]`` complex (channel ``i*K + j``) or None. Returns ``o: [B, T, H, K]`` and the
final state in the same layout as ``h0``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor
from torch.utils.checkpoint import checkpoint as _checkpoint

from mixerlab.ops.diag_ssm.conv import _powers, diag_ssm_kernel
from mixerlab.ops.precision import wide_dtype


def _re_im(z: Tensor) -> Tensor:
    """Complex ``[..., M]`` -> real ``[..., M*2]`` (real and imaginary parts interleaved)."""
    return rearrange(torch.view_as_real(z), "... m r -> ... (m r)")


def _chunk(
    qc: Tensor,
    kc: Tensor,
    vc: Tensor,
    h: Tensor | None,
    toeplitz: Tensor,
    read: Tensor,
    dtA: Tensor,
    dB: Tensor,
    idx: Tensor,
    work: torch.dtype,
) -> tuple[Tensor, Tensor]:
    """One chunk ``qc, kc, vc: [B, H, n, K]`` from the state ``h: [B, H, j, (i m r)]`` (or None):
    its outputs ``[B, H, n, K]`` and the state after it."""
    M = dtA.shape[-1]
    n = qc.shape[2]
    scores = (qc @ kc.transpose(-1, -2)) * toeplitz[:, :n, :n]
    o = scores @ vc  # [B, H, n, K]
    if h is not None:
        lhs = rearrange(qc[..., None] * read[:, :n], "b h t i r -> b h t (i r)")
        o = o + lhs @ h.transpose(-1, -2)
    # inputs decayed to the chunk end: dA^(n-1-s) dB
    feed = _re_im(_powers(dtA, n - 1 - idx[:n]) * dB).to(work)  # [n, H, 2M]
    lhs = rearrange(kc[..., None] * rearrange(feed, "t h r -> h t 1 r"), "b h t i r -> b h t (i r)")
    local = vc.transpose(-1, -2) @ lhs  # [B, H, j, (i m r)]
    if h is None:
        return o, local
    carry = torch.exp(n * dtA)[:, None, :]  # [H, 1, M]: broadcast over (j, i)
    hc = torch.view_as_complex(rearrange(h, "b h j (i m r) -> b h j i m r", m=M, r=2).contiguous())
    return o, rearrange(torch.view_as_real(hc * carry[:, None]), "b h j i m r -> b h j (i m r)") + local


def diag_ssm_outer_chunk(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    dtA: Tensor,
    dB: Tensor,
    C: Tensor,
    D: Tensor,
    h0: Tensor | None = None,
    *,
    chunk_size: int = 512,
    checkpoint: bool = True,
) -> tuple[Tensor, Tensor]:
    B, T, H, K = q.shape
    M = dtA.shape[-1]
    out_dtype = q.dtype
    work = wide_dtype(q.dtype)
    q, k, v = (t.to(work) for t in (q, k, v))
    # h as real [B, H, j, (i m r)]: the state-update matmul writes it and the read-out matmul
    # reads its transpose without a copy; the (m r) tail is a complex view for the carry
    h = None
    if h0 is not None:
        h = rearrange(torch.view_as_real(h0), "b h (i j) m r -> b h j (i m r)", i=K).to(work)
    c = min(chunk_size, max(T, 1))
    idx = torch.arange(c, device=q.device)
    kern = diag_ssm_kernel(dtA, dB, C, c).to(work)  # [c, H]
    lag = idx[:, None] - idx[None, :]
    toeplitz = kern[lag.clamp_min(0)].permute(2, 0, 1) * (lag >= 0)  # [H, c, c]
    toeplitz = toeplitz + torch.diag_embed(D[:, None].to(work).expand(H, c))
    # read-out weights 2 C dA^(t-t0+1) as (re, -im) so that Re(w h) = w' . [h.re, h.im]
    read = torch.view_as_real(2 * C * _powers(dtA, idx + 1))  # [c, H, M, 2]
    read = read * torch.tensor([1.0, -1.0], dtype=read.dtype, device=q.device)
    read = rearrange(read, "t h m r -> h t 1 (m r)").to(work)
    outs = []
    recompute = checkpoint and torch.is_grad_enabled()
    # split, not slice: each slice's backward would zero-fill a full-length gradient (O(T^2))
    for parts in zip(*(t.split(c, dim=1) for t in (q, k, v))):
        qc, kc, vc = (rearrange(t, "b t h k -> b h t k") for t in parts)
        args = (qc, kc, vc, h, toeplitz, read, dtA, dB, idx, work)
        o, h = _checkpoint(_chunk, *args, use_reentrant=False) if recompute else _chunk(*args)
        outs.append(o)
    o = torch.cat(outs, dim=2) if outs else q.new_zeros(B, H, 0, K)
    if h is None:
        h = q.new_zeros(B, H, K, K * M * 2)
    h = rearrange(h, "b h j (i m r) -> b h (i j) m r", m=M, r=2).to(dtA.real.dtype)
    return rearrange(o, "b h t k -> b t h k").to(out_dtype), torch.view_as_complex(h.contiguous())
