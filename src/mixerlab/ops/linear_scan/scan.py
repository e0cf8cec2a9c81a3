"""First-order linear recurrence, fast forms: ``linear_scan_chunk`` and ``linear_scan_doubling``.

Both compute ``h_t = a_t * h_{t-1} + b_t`` elementwise, using that steps compose associatively:
running ``(a1, b1)`` then ``(a2, b2)`` is the step ``(a2 a1, a2 b1 + b2)``. The sequence is cut
into ``N`` chunks of ``C = chunk_size`` steps (``[B, N, C, *S]``; the tail is padded with identity
steps ``a = 1, b = 0``).

``linear_scan_chunk`` (the default). Pass 1 walks the ``C`` positions of a chunk, for all chunks
at once, keeping the running product of ``a`` and the state reached from a zero chunk start.
Pass 2 walks the ``N`` chunk totals to get each chunk's true start state; every position then
adds ``(running product) * h_start`` in one vectorised op. ``C + N`` Python steps (``2 sqrt(T)``
at best), each on ``[B, N, *S]`` or ``[B, *S]`` tensors; ``O(T)`` work. The backward pass is the
adjoint recurrence run by the same scan (a custom autograd function, first-order gradients
only), so training keeps only ``a``, ``h`` and ``h0``. On CPUs this is the fastest. A decay
with no time axis (or time size 1) is taken as constant in time; its running products then
stay that small.

``linear_scan_doubling``. Inside each chunk a Hillis-Steele doubling scan (``ceil(log2 C)``
vectorised levels over ``[B, N, C, *S]``) replaces pass 1, and the chunk totals are scanned by
recursion, so the depth is ``O(log T)`` with ``O(T log C)`` work. For wide parallel hardware; on
a CPU it is slower than ``linear_scan_chunk`` (more memory traffic, ~2 saved tensors per level).
ParaRNN's Newton solver (:mod:`mixerlab.ops.pararnn.newton`) runs its linearised recurrences
with it.

Both support real or complex ``a`` and ``b``, ``a`` of any sign and ``a == 0``: only products
and sums are used (no logarithms, no division of cumulative products, so no overflow).

Shapes: ``a, b: [B, T, *S]`` (broadcastable to one shape), ``h0: [B, *S]``.
Both return every state ``[B, T, *S]`` and the last ``[B, *S]``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


def _prepare(a: Tensor, b: Tensor, chunk_size: int) -> tuple[Tensor, Tensor, int]:
    """Broadcast to one dtype and shape, pad ``T`` to a multiple of ``C``; returns ``C``."""
    a, b = torch.broadcast_tensors(a, b)
    dtype = torch.promote_types(a.dtype, b.dtype)
    a, b = a.to(dtype), b.to(dtype)
    T = b.shape[1]
    C = min(max(chunk_size, 2), T)  # at least 2, so every recursion level shortens the sequence
    pad = -T % C
    if pad:
        tail = (0, 0) * (b.dim() - 2) + (0, pad)
        a = torch.nn.functional.pad(a, tail, value=1.0)
        b = torch.nn.functional.pad(b, tail, value=0.0)
    return a, b, C


def _empty(b: Tensor, h0: Tensor | None) -> tuple[Tensor, Tensor]:
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0.to(b.dtype)
    return b.new_zeros(b.shape), h


def _chunk_forward(a: Tensor, b: Tensor, h0: Tensor | None, chunk_size: int) -> Tensor:
    """The two-pass chunk scan on prepared inputs: ``b: [B, T, *S]``, ``a`` of time size ``T`` or 1."""
    T = b.shape[1]
    # A decay constant in time (LRU, S4D) stays small: its running products are powers, not [B, T, *S].
    constant = a.shape[1] == 1 and T > 1
    C = min(max(chunk_size, 2), T)
    pad = -T % C
    if pad:
        tail = (0, 0) * (b.dim() - 2) + (0, pad)
        b = torch.nn.functional.pad(b, tail, value=0.0)
        if not constant:
            a = torch.nn.functional.pad(a, tail, value=1.0)
    b_pos = rearrange(b, "b (n c) ... -> c b n ...", c=C).unbind(0)
    a_pos = [a] * C if constant else rearrange(a, "b (n c) ... -> c b n ...", c=C).unbind(0)
    prods, local = [a_pos[0]], [b_pos[0]]
    for a_c, b_c in zip(a_pos[1:], b_pos[1:]):
        prods.append(a_c * prods[-1])
        local.append(a_c * local[-1] + b_c)
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    starts = []
    for prod_n, local_n in zip(prods[-1].expand_as(local[-1]).unbind(1), local[-1].unbind(1)):
        starts.append(h)
        h = prod_n * h + local_n
    prod = torch.stack(prods, dim=2)  # [B, N, C, *S], or [1 or B, 1, C, *S] for a constant decay
    out = torch.stack(local, dim=2)
    out += prod * torch.stack(starts, dim=1)[:, :, None]  # in place: runs inside the autograd Function
    return rearrange(out, "b n c ... -> b (n c) ...")[:, :T]


def _adjoint(a: Tensor, grad: Tensor, chunk_size: int) -> Tensor:
    """``G_t = grad_t + conj(a_(t+1)) G_(t+1)`` with ``G_T = 0``: the same two passes, walked backwards."""
    T = grad.shape[1]
    constant = a.shape[1] == 1 and T > 1
    C = min(max(chunk_size, 2), T)
    pad = -T % C
    if pad:
        tail = (0, 0) * (grad.dim() - 2) + (0, pad)
        grad = torch.nn.functional.pad(grad, tail, value=0.0)
        if not constant:
            a = torch.nn.functional.pad(a, tail, value=1.0)
    a = a.conj()
    g_pos = rearrange(grad, "b (n c) ... -> c b n ...", c=C).unbind(0)
    if constant:
        link = [a] * C
    else:  # position c links to c + 1; the last position of a chunk to the next chunk's first
        a_pos = rearrange(a, "b (n c) ... -> c b n ...", c=C).unbind(0)
        link = [*a_pos[1:], torch.cat([a_pos[0][:, 1:], torch.ones_like(a_pos[0][:, :1])], dim=1)]
    prods, local = [link[-1]], [g_pos[-1]]
    for a_c, g_c in zip(link[-2::-1], g_pos[-2::-1]):
        prods.append(a_c * prods[-1])
        local.append(a_c * local[-1] + g_c)
    prods.reverse()
    local.reverse()
    g = torch.zeros_like(grad[:, 0])
    after = []  # G at the first position of the following chunk, for each chunk
    for prod_n, local_n in zip(
        reversed(prods[0].expand_as(local[0]).unbind(1)), reversed(local[0].unbind(1))
    ):
        after.append(g)
        g = prod_n * g + local_n
    after.reverse()
    out = torch.stack(local, dim=2)
    out += torch.stack(prods, dim=2) * torch.stack(after, dim=1)[:, :, None]
    return rearrange(out, "b n c ... -> b (n c) ...")[:, :T]


class _LinearScan(torch.autograd.Function):
    """Backward by the adjoint recurrence, so autograd keeps only ``a``, ``h`` and ``h0``.

    With ``G_t = dL/dh_t`` accumulated backwards, ``G_t = grad_t + conj(a_(t+1)) G_(t+1)`` is
    itself a first-order linear recurrence (run on flipped time by the same chunk scan), and
    ``dL/db_t = G_t``, ``dL/da_t = G_t conj(h_(t-1))``, ``dL/dh0 = conj(a_0) G_0``.
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor | None, chunk_size: int) -> Tensor:
        h = _chunk_forward(a, b, h0, chunk_size)
        ctx.save_for_backward(a, h, h0)
        ctx.chunk_size = chunk_size
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h: Tensor):
        a, h, h0 = ctx.saved_tensors
        G = _adjoint(a, grad_h, ctx.chunk_size)
        da = dh0 = None
        if ctx.needs_input_grad[0]:
            da = torch.empty_like(G)
            if torch.compiler.is_compiling():
                # torch.compile cannot trace ``out=`` a non-contiguous slice (this backward is
                # traced with the forward); eagerly, ``out=`` saves a temporary the size of G.
                da[:, 1:] = G[:, 1:] * h[:, :-1].conj()
            else:
                torch.mul(G[:, 1:], h[:, :-1].conj(), out=da[:, 1:])
            da[:, 0] = 0 if h0 is None else G[:, 0] * h0.conj()
            da = da.sum_to_size(a.shape)
        if h0 is not None and ctx.needs_input_grad[2]:
            dh0 = (a[:, 0].conj() * G[:, 0]).sum_to_size(h0.shape)
        return da, G if ctx.needs_input_grad[1] else None, dh0, None


def linear_scan_chunk(
    a: Tensor, b: Tensor, h0: Tensor | None = None, *, chunk_size: int = 64
) -> tuple[Tensor, Tensor]:
    dtype = torch.promote_types(a.dtype, b.dtype)
    shape = torch.broadcast_shapes(a.shape, b.shape)
    a = a.to(dtype).reshape((1,) * (len(shape) - a.dim()) + tuple(a.shape))
    b = b.to(dtype).expand(shape)
    if shape[1] == 0:
        return _empty(b, h0)
    out = _LinearScan.apply(a, b, None if h0 is None else h0.to(dtype), chunk_size)
    return out, out[:, -1]


def _doubling(a: Tensor, b: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Inclusive scan along ``dim``: (product of ``a``, state from zero) at each position."""
    size = a.shape[dim]
    k = 1
    while k < size:
        # Both updates read the previous level: the step ending at t absorbs the one ending at t - k.
        # The first k positions are already final and are kept by slicing, not by composing with an
        # identity step: an overflowed product (inf, as in ParaRNN's Newton steps) never meets a zero.
        a_new, a_old = a.narrow(dim, k, size - k), a.narrow(dim, 0, size - k)
        b = torch.cat(
            [b.narrow(dim, 0, k), a_new * b.narrow(dim, 0, size - k) + b.narrow(dim, k, size - k)], dim=dim
        )
        a = torch.cat([a.narrow(dim, 0, k), a_new * a_old], dim=dim)
        k *= 2
    return a, b


def linear_scan_doubling(
    a: Tensor, b: Tensor, h0: Tensor | None = None, *, chunk_size: int = 64
) -> tuple[Tensor, Tensor]:
    T = b.shape[1]
    if T == 0:
        return _empty(b, h0)
    a, b, C = _prepare(a, b, chunk_size)
    a = rearrange(a, "b (n c) ... -> b n c ...", c=C)  # [B, N, C, *S]
    b = rearrange(b, "b (n c) ... -> b n c ...", c=C)
    prod, local = _doubling(a, b, dim=2)
    if a.shape[1] == 1:
        starts = None if h0 is None else h0.to(b.dtype)[:, None]  # [B, 1, *S]
    else:
        ends, _ = linear_scan_doubling(prod[:, :, -1], local[:, :, -1], h0, chunk_size=chunk_size)
        first = torch.zeros_like(ends[:, :1]) if h0 is None else h0.to(b.dtype)[:, None]
        starts = torch.cat([first, ends[:, :-1]], dim=1)  # [B, N, *S]
    h = local if starts is None else local + prod * starts[:, :, None]
    h = rearrange(h, "b n c ... -> b (n c) ...")[:, :T]
    return h, h[:, -1]
