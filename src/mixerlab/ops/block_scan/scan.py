"""Block-diagonal linear recurrence, fast forms: ``block_scan_chunk`` and ``block_scan_doubling``.

Both compute ``h_t = A_t h_{t-1} + b_t`` for ``G`` independent dense ``K x K`` blocks, as in
:mod:`mixerlab.ops.linear_scan.scan` with matrix products in place of scalar ones: steps compose
as ``(A2, b2) o (A1, b1) = (A2 A1, A2 b1 + b2)``. The sequence is cut into ``N`` chunks of
``C = chunk_size`` steps (the tail is padded with identity steps).

``block_scan_chunk`` (the default). Pass 1 walks the ``C`` positions of a chunk for all chunks at
once, keeping the running product ``A_t ... A_start`` (a ``K x K`` matmul per step) and the state
reached from a zero chunk start (a matvec); pass 2 walks the ``N`` chunk totals for each chunk's
true start state; every position then adds ``(running product) @ h_start`` in one batched op.
Cost: ``T G K^3`` flops for the running products plus ``O(T G K^2)``, ``C + N`` Python steps.
The backward pass is the adjoint recurrence (``A^H`` in place of ``A``, walked backwards) by
the same two passes, in a custom autograd function (first-order gradients only), so training
keeps only ``A``, ``h`` and ``h0``.

``block_scan_doubling``. Hillis-Steele doubling inside each chunk (``ceil(log2 C)`` batched-matmul
levels) and recursion over chunk totals: depth ``O(log T)`` but ``O(T G K^3 log C)`` flops and one
saved ``[B, T, G, K, K]`` tensor per level. For wide parallel hardware; on a CPU it is several
times slower than ``block_scan_chunk`` (tiny batched matmuls).

Both support any real or complex matrices (no inverses, no logarithms).

Shapes: ``A: [B, T, G, K, K]`` (row index first), ``b: [B, T, G, K]``, ``h0: [B, G, K]``.
Both return every state ``[B, T, G, K]`` and the last ``[B, G, K]``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


def _identity_like(A: Tensor) -> Tensor:
    K = A.shape[-1]
    return torch.eye(K, dtype=A.dtype, device=A.device).expand(A.shape).clone()


def _pad(A: Tensor, b: Tensor, chunk_size: int) -> tuple[Tensor, Tensor, int]:
    T = b.shape[1]
    C = min(max(chunk_size, 2), T)  # at least 2, so every recursion level shortens the sequence
    pad = -T % C
    if pad:
        A = torch.cat([A, _identity_like(A[:, :1]).expand(-1, pad, -1, -1, -1)], dim=1)
        b = torch.nn.functional.pad(b, (0, 0, 0, 0, 0, pad))
    return A, b, C


def _matvec(A: Tensor, h: Tensor) -> Tensor:
    return (A @ h.unsqueeze(-1)).squeeze(-1)


def _empty(b: Tensor, h0: Tensor | None) -> tuple[Tensor, Tensor]:
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0.to(b.dtype)
    return b.new_zeros(b.shape), h


def _chunk_forward(A: Tensor, b: Tensor, h0: Tensor | None, chunk_size: int) -> Tensor:
    T = b.shape[1]
    A, b, C = _pad(A, b, chunk_size)
    A_pos = rearrange(A, "b (n c) g i j -> c b n g i j", c=C).unbind(0)
    b_pos = rearrange(b, "b (n c) g k -> c b n g k", c=C).unbind(0)
    prods, local = [A_pos[0]], [b_pos[0]]
    for A_c, b_c in zip(A_pos[1:], b_pos[1:]):
        prods.append(A_c @ prods[-1])
        local.append(_matvec(A_c, local[-1]) + b_c)
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    starts = []
    for prod_n, local_n in zip(prods[-1].unbind(1), local[-1].unbind(1)):
        starts.append(h)
        h = _matvec(prod_n, h) + local_n
    out = torch.stack(local, dim=2)  # [B, N, C, G, K]; added to in place: no autograd in here
    out += _matvec(torch.stack(prods, dim=2), torch.stack(starts, dim=1)[:, :, None])
    return rearrange(out, "b n c g k -> b (n c) g k")[:, :T]


def _adjoint(A: Tensor, grad: Tensor, chunk_size: int) -> Tensor:
    """``G_t = grad_t + A_(t+1)^H G_(t+1)`` with ``G_T = 0``: the same two passes, walked backwards."""
    T = grad.shape[1]
    A, grad, C = _pad(A, grad, chunk_size)
    AH = rearrange(A.conj(), "b (n c) g i j -> c b n g j i", c=C).unbind(0)  # conjugate transposes
    g_pos = rearrange(grad, "b (n c) g k -> c b n g k", c=C).unbind(0)
    # Position c links to c + 1; the last position of a chunk to the next chunk's first.
    link = [*AH[1:], torch.cat([AH[0][:, 1:], _identity_like(AH[0][:, :1])], dim=1)]
    prods, local = [link[-1]], [g_pos[-1]]
    for L_c, g_c in zip(link[-2::-1], g_pos[-2::-1]):
        prods.append(L_c @ prods[-1])
        local.append(_matvec(L_c, local[-1]) + g_c)
    prods.reverse()
    local.reverse()
    g = torch.zeros_like(grad[:, 0])
    after = []  # G at the first position of the following chunk, for each chunk
    for prod_n, local_n in zip(reversed(prods[0].unbind(1)), reversed(local[0].unbind(1))):
        after.append(g)
        g = _matvec(prod_n, g) + local_n
    after.reverse()
    out = torch.stack(local, dim=2)
    out += _matvec(torch.stack(prods, dim=2), torch.stack(after, dim=1)[:, :, None])
    return rearrange(out, "b n c g k -> b (n c) g k")[:, :T]


class _BlockScan(torch.autograd.Function):
    """Backward by the adjoint recurrence, so autograd keeps only ``A``, ``h`` and ``h0``.

    ``G_t = grad_t + A_(t+1)^H G_(t+1)``, ``dL/db_t = G_t``, ``dL/dA_t = G_t conj(h_(t-1))^T``
    (an outer product) and ``dL/dh0 = A_0^H G_0``.
    """

    @staticmethod
    def forward(ctx, A: Tensor, b: Tensor, h0: Tensor | None, chunk_size: int) -> Tensor:
        h = _chunk_forward(A, b, h0, chunk_size)
        ctx.save_for_backward(A, h, h0)
        ctx.chunk_size = chunk_size
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h: Tensor):
        A, h, h0 = ctx.saved_tensors
        G = _adjoint(A, grad_h, ctx.chunk_size)
        dA = dh0 = None
        if ctx.needs_input_grad[0]:
            first = torch.zeros_like(h[:, :1]) if h0 is None else h0[:, None]
            h_prev = torch.cat([first, h[:, :-1]], dim=1).conj()
            dA = G.unsqueeze(-1) * h_prev.unsqueeze(-2)  # [B, T, G, K, K]
        if h0 is not None and ctx.needs_input_grad[2]:
            dh0 = _matvec(A[:, 0].conj().transpose(-1, -2), G[:, 0])
        return dA, G if ctx.needs_input_grad[1] else None, dh0, None


def block_scan_chunk(
    A: Tensor, b: Tensor, h0: Tensor | None = None, *, chunk_size: int = 32
) -> tuple[Tensor, Tensor]:
    T = b.shape[1]
    if T == 0:
        return _empty(b, h0)
    dtype = torch.promote_types(A.dtype, b.dtype)
    h0 = None if h0 is None else h0.to(dtype)
    out = _BlockScan.apply(A.to(dtype), b.to(dtype), h0, chunk_size)
    return out, out[:, -1]


def _doubling(A: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Inclusive scan along dim 2 of ``A: [B, N, C, G, K, K]``, ``b: [B, N, C, G, K, 1]``."""
    size = A.shape[2]
    k = 1
    while k < size:
        A_prev = torch.cat([_identity_like(A[:, :, :k]), A[:, :, : size - k]], dim=2)
        b_prev = torch.cat([torch.zeros_like(b[:, :, :k]), b[:, :, : size - k]], dim=2)
        # Both updates read the previous level: the steps ending at t absorb those ending at t - k.
        b = A @ b_prev + b
        A = A @ A_prev
        k *= 2
    return A, b


def block_scan_doubling(
    A: Tensor, b: Tensor, h0: Tensor | None = None, *, chunk_size: int = 8
) -> tuple[Tensor, Tensor]:
    T = b.shape[1]
    if T == 0:
        return _empty(b, h0)
    A, b, C = _pad(A, b, chunk_size)
    A = rearrange(A, "b (n c) g i j -> b n c g i j", c=C)
    b = rearrange(b, "b (n c) g (k one) -> b n c g k one", c=C, one=1)
    prod, local = _doubling(A, b)  # [B, N, C, G, K, K], [B, N, C, G, K, 1]
    if A.shape[1] == 1:
        h = local if h0 is None else local + prod @ h0.to(b.dtype)[:, None, None, :, :, None]
    else:
        ends, _ = block_scan_doubling(prod[:, :, -1], local[:, :, -1, ..., 0], h0, chunk_size=chunk_size)
        first = torch.zeros_like(ends[:, :1]) if h0 is None else h0.to(b.dtype)[:, None]
        starts = torch.cat([first, ends[:, :-1]], dim=1)  # [B, N, G, K]
        h = local + prod @ starts[:, :, None, :, :, None]
    h = rearrange(h, "b n c g k one -> b (n c) g (k one)")[:, :T]
    return h, h[:, -1]
