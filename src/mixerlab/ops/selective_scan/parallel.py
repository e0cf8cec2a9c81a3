"""The selective scan with no loop over time: blocked levels and a log-depth top (a GPU-friendly form).

"Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (arXiv:2312.00752), the same
recurrence as :mod:`.reference`, ``h_t = a_t h_{t-1} + w_t`` per channel ``e`` and state ``n`` with
``a_t = exp(dt_t A)`` (or ``2 exp(dt_t A) - 1``, arXiv:2411.12537) and ``w_t = dt_t x_t B_t``.

:mod:`.scan` runs a Python loop over blocks of 8 tokens inside a loop over chunks: cheap on a CPU,
but on a GPU each iteration is a few tiny kernel launches, and launches rather than arithmetic
are then the likely cost. Here the number of dispatched operators depends on ``T`` only through a
``log2(T / 64)`` term (checked by ``tests/ops/test_selective_scan_parallel.py``):

1. **Level 1**, blocks of ``c = block_size`` tokens, all at once: with ``L_t`` the within-block
   cumulative ``log |a|`` and ``m = L_last / 2``, the state started from zero is
   ``local_t = grow_t * cumsum_s(w_s / grow_s)`` with ``grow_t = exp(L_t - m)`` (two ``[c, c]``
   triangle matmuls); each exponent lies in ``[-|L_last| / 2, |L_last| / 2]``, so ``grow`` is a
   normal floating-point number and the division is exact to rounding.
2. **Level 2**: the block summaries ``h_end[k] = P[k] h_end[k-1] + local_last[k]`` (``P[k]`` the
   block's product of transitions) are the same recurrence ``c`` times shorter, solved by the same
   blocked step (``levels`` times in all).
3. **Top**: the remaining ``K = T / c^levels`` summaries by Hillis-Steele doubling,
   ``h_k += A_k h_{k-d}; A_k *= A_{k-d}`` for ``d = 1, 2, 4, ...`` (``ceil(log2 K)`` rounds on
   ``[B, K, E N]``; only products of transitions, never a division, so nothing can overflow).
4. Going back down, ``h_t = grow_t (acc_t + exp(m) h_start)`` per level.

Unlike Mamba-2's SSD (:mod:`mixerlab.ops.ssd`), whose decay is one scalar per head, Mamba's decay
differs per ``(e, n)``, so a quadratic intra-chunk form would hold a ``[c, c, E, N]`` decay per
chunk (``T c E N`` numbers); the state form above holds ``T E N``.

Bounds: ``log |a|`` is floored per step (and per block summary) at ``log_floor`` (-20 in float32,
-45 in float64), as in :mod:`.scan`: a transition below ``exp(-20)`` already erases the previous
state below float32 resolution. With the floor every exponent of a level stays below
``block_size * 20 / 2 = 80`` in float32. Negative transitions keep their sign apart:
``sign(P_t / P_s) = sign(P_t) sign(P_s)`` with ``sign(P_t)`` a cumulative product.

Backward (hand-written, :class:`SelectiveScanParallel`): the forward keeps only its inputs; the
backward recomputes the states and runs the adjoint ``g_t = u_t + a_{t+1} g_{t+1}``
(``u_t = dy_t C_t``) as the same scan run from the end (upper triangles, doubling to the left),
then ``dw = g`` and ``da_t = g_t h_{t-1}``. Cost: memory ``O(T E N)`` (a few ``[B, T, E, N]``
tensors at once, no chunking) against :mod:`.scan`'s ``O(chunk E N)``; on a CPU that streams
through memory and is slower than :mod:`.scan`, whose chunks stay in cache. The choice is the
``mamba`` layer's mode.

Shapes: ``x, dt: [B, T, E]``; ``A: [E, N]``; ``B, C: [B, T, N]``; ``state: [B, E, N]``; inside,
the state lanes are flattened, ``[B, T, F]`` with ``F = E N``, and blocked as ``[B, K, c, F]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor
from torch.autograd.function import once_differentiable

from mixerlab.ops.precision import wide_dtype
from mixerlab.ops.selective_scan.reference import transition
from mixerlab.ops.selective_scan.scan import log_floor, max_block_size


def _doubling(log_a: Tensor, sign: Tensor | None, w: Tensor, h0: Tensor, reverse: bool) -> Tensor:
    """Inclusive states of ``h_k = a_k h_{k-1} + w_k`` over dim 1 by doubling; ``[B, K, F]``.

    With ``reverse`` the recurrence runs from the end, ``h_k = a_k h_{k+1} + w_k``, and ``h0``
    enters at the last step.
    """
    a = torch.exp(log_a) if sign is None else torch.exp(log_a) * sign
    K, d = w.shape[1], 1
    # the initial state enters as an extra input to the first step (the last one in reverse)
    if reverse:
        h = torch.cat([w[:, :-1], w[:, -1:] + a[:, -1:] * h0[:, None]], dim=1)
    else:
        h = torch.cat([w[:, :1] + a[:, :1] * h0[:, None], w[:, 1:]], dim=1)
    while d < K:
        # the neighbour d steps back (forward in reverse): zero-padded for h, one-padded for a
        side = (0, 0, 0, d) if reverse else (0, 0, d, 0)
        window = slice(d, None) if reverse else slice(None, K)
        h = h + a * F.pad(h, side)[:, window]
        if 2 * d < K:
            a = a * F.pad(a, side, value=1.0)[:, window]
        d *= 2
    return h


def _scan(
    log_a: Tensor,
    sign: Tensor | None,
    w: Tensor,
    h0: Tensor,
    c: int,
    levels: int,
    floor: float,
    reverse: bool,
) -> Tensor:
    """Inclusive states ``[B, T, F]`` of ``h_t = sign_t exp(log_a_t) h_{t-1} + w_t`` from ``h0: [B, F]``.

    ``log_a: [B, T, F]`` is at or above ``floor``; ``sign`` is ``+-1`` or None (all positive).
    With ``reverse``, ``h_t = sign_t exp(log_a_t) h_{t+1} + w_t`` and ``h0`` enters after the end.
    """
    T = w.shape[1]
    if levels == 0 or T == 1:
        return _doubling(log_a, sign, w, h0, reverse)
    pad = -T % c
    if pad:  # log a = 0 (a = 1) and w = 0 after the end: the state passes through unchanged
        log_a, w = F.pad(log_a, (0, 0, 0, pad)), F.pad(w, (0, 0, 0, pad))
        sign = None if sign is None else F.pad(sign, (0, 0, 0, pad), value=1.0)
    blocks = "b (k c) f -> b k c f"
    # cumulative sums inside a block (from the block's end in reverse) as [c, c] triangle matmuls
    tri = torch.ones(c, c, dtype=w.dtype, device=w.device)
    tri = tri.triu() if reverse else tri.tril()
    edge = 0 if reverse else -1  # the block's step that meets the next block
    # tri - 1/2 gives L_t - m directly (m = L_edge / 2, half the block's total log-decay)
    L_mid = torch.matmul(tri - 0.5, rearrange(log_a, blocks, c=c))  # [B, K, c, F]
    mid = L_mid[:, :, edge]  # [B, K, F]
    grow = torch.exp(L_mid)
    if sign is not None:
        sign = rearrange(sign, blocks, c=c)
        cum_sign = sign.flip(2).cumprod(2).flip(2) if reverse else sign.cumprod(2)  # sign(P_t)
        grow = grow.mul_(cum_sign)
    # |L_mid| <= c |floor| / 2 keeps grow a normal number, so dividing by it is exact to rounding
    # (no autograd runs through here: the backward is written by hand, see SelectiveScanParallel)
    acc = torch.matmul(tri, rearrange(w, blocks, c=c) / grow)  # [B, K, c, F]
    # block summaries: h_end[k] = P[k] h_end[k-1] + local_end[k], the same recurrence K long
    block_log = (2 * mid).clamp_min(floor)
    block_sign = None if sign is None else cum_sign[:, :, edge]
    local_end = grow[:, :, edge] * acc[:, :, edge]
    ends = _scan(block_log, block_sign, local_end, h0, c, levels - 1, floor, reverse)
    # the state entering each block [B, K, F]
    if reverse:
        starts = torch.cat([ends[:, 1:], h0[:, None]], dim=1)
    else:
        starts = torch.cat([h0[:, None], ends[:, :-1]], dim=1)
    states = acc.add_((torch.exp(mid) * starts)[:, :, None]).mul_(grow)
    return rearrange(states, "b k c f -> b (k c) f")[:, :T]


def _log_abs_transition(dt: Tensor, A: Tensor, negative: bool, floor: float) -> tuple[Tensor, Tensor | None]:
    """``log |a|`` floored, and ``sign(a)`` (None without negative eigenvalues); ``[B, T, F]``."""
    if not negative:
        return rearrange((dt[..., None] * A).clamp_min_(floor), "b t e n -> b t (e n)"), None
    a = rearrange(transition(dt, A, True), "b t e n -> b t (e n)")
    # clamp before log: a can be exactly 0 where exp(dt A) = 1/2
    sign = torch.where(a < 0, -1.0, 1.0).to(a.dtype)
    return torch.log(a.abs().clamp_min(math.exp(floor))), sign


def _states(x, dt, A, B, h0, negative, c, levels):
    """Every state ``[B, T, F]``, plus ``w`` and the transition pieces the backward reuses."""
    floor = log_floor(x.dtype)
    log_a, sign = _log_abs_transition(dt, A, negative, floor)
    w = rearrange((dt * x)[..., None] * B[:, :, None, :], "b t e n -> b t (e n)")
    states = _scan(log_a, sign, w, rearrange(h0, "b e n -> b (e n)"), c, levels, floor, reverse=False)
    return states, w, log_a, sign


class SelectiveScanParallel(torch.autograd.Function):
    """``(y [B, T, E], h_T [B, E, N])`` of the whole sequence; saves only its inputs."""

    @staticmethod
    def forward(ctx, x, dt, A, B, C, h0, negative: bool, c: int, levels: int):
        states, *_ = _states(x, dt, A, B, h0, negative, c, levels)
        E, N = A.shape
        states = rearrange(states, "b t (e n) -> b t e n", e=E, n=N)
        y = torch.einsum("bten,btn->bte", states, C)
        ctx.save_for_backward(x, dt, A, B, C, h0)
        ctx.options = (negative, c, levels)
        return y, states[:, -1].clone()

    @staticmethod
    @once_differentiable  # the backward updates its own buffers in place: no double backward
    def backward(ctx, dy: Tensor, dh: Tensor):
        x, dt, A, B, C, h0 = ctx.saved_tensors
        negative, c, levels = ctx.options
        E, N = A.shape
        floor = log_floor(x.dtype)
        states, w, log_a, sign = _states(x, dt, A, B, h0, negative, c, levels)
        u = rearrange(dy[..., None] * C[:, :, None, :], "b t e n -> b t (e n)")
        # the adjoint g_t = u_t + a_{t+1} g_{t+1} runs from the end, entered by dh after step T - 1
        next_log = F.pad(log_a[:, 1:], (0, 0, 0, 1))  # a_{t+1}; a_T = 1 carries dh in
        next_sign = None if sign is None else F.pad(sign[:, 1:], (0, 0, 0, 1), value=1.0)
        dh_flat = rearrange(dh, "b e n -> b (e n)")
        g = _scan(next_log, next_sign, u, dh_flat, c, levels, floor, reverse=True)
        to = "b t (e n) -> b t e n"
        g4, states4 = rearrange(g, to, e=E, n=N), rearrange(states, to, e=E, n=N)
        a0 = transition(dt[:, 0], A, negative)  # [B, E, N]
        dh0 = a0 * g4[:, 0]
        d_dtx = torch.einsum("bten,btn->bte", g4, B)
        dB = torch.einsum("bten,bte->btn", g4, dt * x)
        dC = torch.einsum("bte,bten->btn", dy, states4)
        if negative:
            # a = 2 exp(dt A) - 1: da / d(dt A) = 2 exp(dt A); dL/da_t = g_t h_{t-1}
            prev = torch.cat([h0[:, None], states4[:, :-1]], dim=1)
            d_logit = g4 * prev * 2 * torch.exp(dt[..., None] * A)
        else:
            # a = exp(dt A): dL/d(dt A) = g_t a_t h_{t-1} = g_t (h_t - w_t)
            d_logit = g4 * (states4 - rearrange(w, to, e=E, n=N))
        ddt = torch.einsum("bten,en->bte", d_logit, A) + d_dtx * x
        dA = torch.einsum("bten,bte->en", d_logit, dt)
        return d_dtx * dt, ddt, dA, dB, dC, dh0, None, None, None


def selective_scan_parallel(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    state: Tensor | None = None,
    negative_eigenvalues: bool = False,
    block_size: int = 8,
    levels: int = 2,
) -> tuple[Tensor, Tensor]:
    """Selective scan (arXiv:2312.00752) with no loop over time; same contract as :mod:`.reference`.

    ``block_size`` tokens per block at each of ``levels`` blocked levels (at most 8 in float32, 31
    in float64, so that no exponent overflows); the ``T / block_size^levels`` block summaries left
    on top are combined by doubling. Half-precision inputs are computed in float32.
    Returns ``(y [B, T, E], state [B, E, N])``.
    """
    out_dtype = x.dtype
    work = wide_dtype(x.dtype)
    x, dt, A, B, C = (t.to(work) for t in (x, dt, A, B, C))
    largest = max_block_size(work)
    if not (isinstance(block_size, int) and 1 <= block_size <= largest):
        allowed = f"expected an int in 1..{largest} (larger blocks could overflow {work})"
        raise ValueError(f"block_size={block_size!r} is not allowed; {allowed}")
    if not (isinstance(levels, int) and levels >= 0):
        raise ValueError(f"levels={levels!r} is not allowed; expected an int >= 0")
    batch, T, E = x.shape
    h0 = x.new_zeros(batch, E, A.shape[1]) if state is None else state.to(work)
    if T == 0:
        return x.new_zeros(batch, 0, E).to(out_dtype), h0.to(out_dtype)
    y, h = SelectiveScanParallel.apply(x, dt, A, B, C, h0, negative_eigenvalues, block_size, levels)
    return y.to(out_dtype), h.to(out_dtype)
