"""The selective scan as a blocked two-level scan (the fast training form).

Same equations as :mod:`.reference`: ``h_t = a_t h_{t-1} + w_t`` per channel and state, with
``w_t = dt_t x_t B_t`` and ``a_t = exp(dt_t A)`` (or ``2 exp(dt_t A) - 1`` with negative
eigenvalues, arXiv:2411.12537). No per-token Python loop:

1. **Inside a block** of ``block_size`` tokens (all blocks at once) the state started from zero is
   ``local_t = sum_{s<=t} (P_t / P_s) w_s`` with ``P_t = prod_{r<=t} a_r`` inside the block. It is
   one ``cumsum`` after rescaling: ``local_t = exp(L_t - m) * cumsum_s(exp(m - L_s) w_s)`` with
   ``L = cumsum(log|a|)`` and ``m = L_last / 2`` the block's mid log-decay, so every exponent lies
   in ``[-|L_last|/2, |L_last|/2]``. The sign of ``P`` (negative eigenvalues) is kept apart:
   ``sign(P_t / P_s) = sign(P_t) sign(P_s)`` is folded into ``w_s`` and into the result.
2. **Across blocks** the block-start states follow ``start_{k+1} = P_last[k] start_k + local_last[k]``,
   a loop over blocks (``T / block_size`` small steps on ``[B, E, N]``), and
   ``h_t = local_t + P_t start_k``.

Why this is safe: ``log|a|`` is floored per step at ``LOG_FLOOR`` (-20 in float32, -45 in
float64), i.e. a transition below ``exp(-20) = 2e-9`` is treated as ``2e-9``; that already erases
the previous state below float32 resolution, so the result is unchanged to working precision.
With the floor, ``|L_last|/2 <= 10 * block_size``, so ``block_size = 8`` keeps every exponent
below 80 and nothing overflows in float32 (larger blocks are refused). Unlike a ``logcumsumexp``
formulation, no exponent is formed by subtracting two large numbers, so the rounding error stays
close to the sequential loop's (measured: within ~20x of it in float32 even with per-step decays
at the floor, where a whole-sequence log-space scan loses ``|L| * eps``).
Half-precision inputs are computed in float32.

Memory: the sequence is also cut into chunks of ``chunk_size`` tokens, carried one to the next,
and each chunk is recomputed in the backward pass (activation checkpointing) unless
``checkpoint=False``; peak memory is then the inputs plus a few ``[B, chunk, E, N]`` tensors
rather than a dozen ``[B, T, E, N]`` ones.

Fast path: when no ``dt A`` of the call reaches the floor (one check on ``[B, T, E]``, the usual
case), ``log P_t = A * cumsum(dt)_t`` needs no cumulative sum over ``N``, and each chunk runs
through :class:`.separable.SeparableChunk`, whose hand-written backward recomputes the states
and runs the adjoint scan itself (measured 1.6x faster forward+backward than autograd with
checkpointing at D=256, L=1024; memory stays the chunk's inputs). Negative eigenvalues, a step at
the floor, and tracing under ``torch.compile`` take the general path above.

Shapes: ``x, dt: [B, T, E]``; ``A: [E, N]``; ``B, C: [B, T, N]``; ``state: [B, E, N]``;
blocks ``[B, K, c, E, N]`` with ``K`` blocks of ``c = block_size`` tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor
from torch.utils.checkpoint import checkpoint as _checkpoint

from mixerlab.ops.precision import wide_dtype
from mixerlab.ops.selective_scan.reference import transition
from mixerlab.ops.selective_scan.separable import SeparableChunk

LOG_FLOOR = {torch.float64: -45.0}
_DEFAULT_FLOOR = -20.0
# Largest exponent allowed inside a block: exp(80) and exp(-80) are normal float32 numbers.
_MAX_EXPONENT = {torch.float64: 700.0}
_DEFAULT_MAX_EXPONENT = 80.0


def log_floor(dtype: torch.dtype) -> float:
    """The per-step floor of ``log |a|`` in ``dtype``."""
    return LOG_FLOOR.get(dtype, _DEFAULT_FLOOR)


def max_block_size(dtype: torch.dtype) -> int:
    """The largest block whose exponents stay below ``_MAX_EXPONENT`` with steps at the floor."""
    return int(_MAX_EXPONENT.get(dtype, _DEFAULT_MAX_EXPONENT) // (-log_floor(dtype) / 2))


def _block_cumsum(tril: Tensor, v: Tensor) -> Tensor:
    """Cumulative sum over dim 2 of ``v: [B, K, c, E, N]`` given ``tril = ones(c, c).tril()``."""
    return torch.matmul(tril, v.flatten(3)).view_as(v)


def _scan_chunk(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    h0: Tensor | None,
    negative: bool,
    block_size: int,
) -> tuple[Tensor, Tensor]:
    """One chunk: ``x, dt: [B, L, E]``, ``B, C: [B, L, N]``, ``h0: [B, E, N]`` -> ``y, h_L``."""
    length = x.shape[1]
    pad = -length % block_size
    if pad:
        # dt = 0 gives a = 1 and w = 0: padded steps leave the state as it is
        x, dt, B, C = (F.pad(t, (0, 0, 0, pad)) for t in (x, dt, B, C))
    floor = LOG_FLOOR.get(x.dtype, _DEFAULT_FLOOR)
    blocks = {"pattern": "b (k c) ... -> b k c ...", "c": block_size}
    dt_b = rearrange(dt, **blocks)  # [B, K, c, E]
    w = rearrange(dt * x, **blocks)[..., None] * rearrange(B, **blocks)[..., None, :]  # [B, K, c, E, N]
    # Cumulative sums over the few tokens of a block as one batched matmul with a triangle: much
    # faster on CPU than cumsum over a middle dimension, and its backward needs no flips. The
    # matrix tril - 1/2 gives L - m directly (m = L_last / 2), and its last row gives m.
    tril = torch.ones(block_size, block_size, dtype=x.dtype, device=x.device).tril()
    sign = None
    if negative:
        a = transition(dt_b, A, True)  # in (-1, 1)
        log_a = torch.log(a.abs().clamp_min(math.exp(floor)))  # clamp first: finite grad at 0
        sign = torch.cumprod(torch.where(a < 0, -1.0, 1.0).to(a.dtype), dim=2)  # sign(P_t)
        w = w * sign
        L_mid = _block_cumsum(tril - 0.5, log_a)  # [B, K, c, E, N]  log |P_t| - m
    else:
        log_a = (dt_b[..., None] * A).clamp_min(floor)  # log exp(dt A), no round trip
        L_mid = _block_cumsum(tril - 0.5, log_a)
    mid = L_mid[:, :, -1:]  # [B, K, 1, E, N]
    grow = torch.exp(L_mid)
    # h_t = sign_t * grow_t * (cumsum_s(w_s / grow_s) + exp(m) * start): the block-start state
    # enters inside the bracket, so it costs one broadcast add on the big tensor
    # w * exp(-L_mid), not w / grow: the derivative of a quotient is -w / grow^2, and grow^2
    # reaches exp(-160), which is 0 in float32 (inf, then NaN, in the gradients of training)
    acc = _block_cumsum(tril, w * torch.exp(-L_mid))  # [B, K, c, E, N]
    P_last = torch.exp(2 * mid[:, :, 0])  # [B, K, E, N]
    local_last = grow[:, :, -1] * acc[:, :, -1]
    if sign is not None:
        P_last, local_last = P_last * sign[:, :, -1], local_last * sign[:, :, -1]
    h = h0
    starts = []
    for P_k, local_k in zip(P_last.unbind(1), local_last.unbind(1)):
        starts.append(h)
        h = local_k if h is None else P_k * h + local_k
    if h0 is not None or len(starts) > 1:
        first = starts[0] if h0 is not None else torch.zeros_like(starts[1])
        start = torch.stack([first, *starts[1:]], dim=1)  # [B, K, E, N]
        acc = acc + (torch.exp(mid[:, :, 0]) * start)[:, :, None]
    states = grow * acc if sign is None else grow * acc * sign
    y = torch.einsum("bkcen,bkcn->bkce", states, rearrange(C, **blocks))
    y = rearrange(y, "b k c e -> b (k c) e")[:, :length]
    return y, h


def _separable_chunk(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, h0: Tensor | None, block_size: int
) -> tuple[Tensor, Tensor]:
    length = x.shape[1]
    pad = -length % block_size
    if pad:  # dt = 0: a = 1 and w = 0, the state passes through unchanged
        x, dt, B, C = (F.pad(t, (0, 0, 0, pad)) for t in (x, dt, B, C))
    h0 = x.new_zeros(x.shape[0], x.shape[2], A.shape[1]) if h0 is None else h0
    y, h = SeparableChunk.apply(x, dt, A, B, C, h0, block_size)
    return y[:, :length], h


def selective_scan_chunk(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    state: Tensor | None = None,
    negative_eigenvalues: bool = False,
    chunk_size: int = 256,
    block_size: int = 8,
    checkpoint: bool = True,
) -> tuple[Tensor, Tensor]:
    out_dtype = x.dtype
    work = wide_dtype(x.dtype)
    if work != x.dtype:
        x, dt, A, B, C = (t.to(work) for t in (x, dt, A, B, C))
        state = None if state is None else state.to(work)
    floor = log_floor(x.dtype)
    largest = max_block_size(x.dtype)
    if not 1 <= block_size <= largest:
        raise ValueError(f"block_size={block_size} is not allowed for {x.dtype}; expected 1..{largest}")
    T = x.shape[1]
    h = state
    ys = []
    recompute = checkpoint and torch.is_grad_enabled()
    separable = False
    if not negative_eigenvalues and not torch.compiler.is_compiling():
        # One cheap check on [B, T, E]: the largest step decay dt * max|A| stays above the floor.
        steepest = A.detach().abs().amax(dim=1)  # [E]
        separable = bool((dt.detach() * steepest).amax() <= -floor) if T else False
    # split, not slice: each slice's backward would zero-fill a full-length gradient (O(T^2))
    for x_c, dt_c, B_c, C_c in zip(*(t.split(chunk_size, dim=1) for t in (x, dt, B, C))):
        args = (x_c, dt_c, A, B_c, C_c, h)
        if separable:
            y, h = _separable_chunk(*args, block_size)
        elif recompute:
            y, h = _checkpoint(_scan_chunk, *args, negative_eigenvalues, block_size, use_reentrant=False)
        else:
            y, h = _scan_chunk(*args, negative_eigenvalues, block_size)
        ys.append(y)
    if h is None:
        h = x.new_zeros(x.shape[0], x.shape[2], A.shape[1])
    y = torch.cat(ys, dim=1) if ys else x[:, :0].clone()
    return y.to(out_dtype), h.to(out_dtype)
