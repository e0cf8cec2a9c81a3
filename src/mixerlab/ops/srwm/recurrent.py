"""The self-referential weight matrix, "A Modern Self-Referential Weight Matrix That Learns to
Modify Itself" (arXiv:2202.05780): one step, and the fused step loop with a hand-written backward.

The update is nonlinear in the weights (the queries, keys and learning rates that modify ``W``
are produced by ``W`` itself and pass through a softmax), so there is no chunkwise-parallel form:
the authors train it sequentially too (a custom CUDA kernel that loops over time). On a GPU such a
loop costs kernel launches per step, so :func:`srwm_recurrent` launches few:

- ``phi(x)`` for all ``T``, the output rows, the gradient of ``x`` and the part of the backward
  that reads no later step are single ops over the whole sequence (or over a whole segment);
- ``W phi(q) - W phi(k)`` is one matrix-vector product ``W (phi(q) - phi(k))``; a forward step is
  8 ops (3 of them batched matmuls over batch and heads), written into preallocated buffers;
- the backward walks the steps in reverse with 9 ops per step, one of which recomputes the
  weights (below), instead of autograd's graph of about 27 nodes per step.

Memory. The weights change at every step, and keeping all of them (as autograd does for a plain
loop) costs ``T B H R K`` values: 26 GB in float32 at ``B=4, T=4096, H=8, K=128``. The loop keeps
them only every ``C`` steps (checkpoints); the backward rebuilds one segment of ``C`` steps at a
time from its checkpoint and the saved per-step vectors (one rank-one update per step, exact: the
same operation on the same values as the forward) and then walks back through it. The weights
held are ``T / C + C`` matrices instead of ``T``; ``C = ceil(sqrt(T))`` minimises that sum, so
they grow as ``sqrt(T)`` and the rest, ``O(T B H K)``, grows like the input. Without gradients
nothing per step is kept.

Shapes: ``x: [B, T, H, K]``, weights ``[B, H, R, K]`` with ``R = 3K + 4`` rows ``[y; q; k; beta]``;
inside the loop batch and heads are one axis ``N = B H``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import torch
from einops import rearrange
from torch import Tensor
from torch.autograd.function import once_differentiable

from mixerlab.errors import check_positive_int


def _row_groups(K: int, device: torch.device) -> Tensor:
    """``[R]``: which of the four learning rates (``y, q, k, beta`` rows) scales each row."""
    return torch.arange(4).repeat_interleave(torch.tensor([K, K, K, 4])).to(device)


def checkpoint_interval(seq_len: int) -> int:
    """``ceil(sqrt(T))``: the segment length that minimises the weight matrices the backward holds
    (``T / C`` checkpoints plus one segment of ``C``)."""
    return math.isqrt(max(seq_len, 1) - 1) + 1


def srwm_step(x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """One step: ``x: [B, H, K]`` -> ``(y: [B, H, K], new weights: [B, H, R, K])``."""
    K = x.shape[-1]
    out = (weight @ torch.softmax(x, dim=-1)[..., None])[..., 0]  # [B, H, R]
    y, q, k, b = out.split([K, K, K, 4], dim=-1)
    phi_qk = torch.softmax(torch.stack([q, k], dim=-1), dim=-2)  # [B, H, K, 2]
    v_pair = weight @ phi_qk  # [B, H, R, 2]: W phi(q), W phi(k)
    lr = torch.sigmoid(b)[..., _row_groups(K, x.device)]  # [B, H, R]
    delta = lr * (v_pair[..., 0] - v_pair[..., 1])  # [B, H, R]
    return y, weight + delta[..., None] * phi_qk[..., 1][..., None, :]


def _forward_loop(x: Tensor, weight: Tensor, interval: int, save: bool) -> tuple[Tensor, Tensor, tuple]:
    """The forward steps: ``(y: [B, T, H, K], final weights: [B, H, R, K], saved)``.

    With ``save``, ``saved`` holds what the backward needs: the weights before steps
    ``0, C, 2C, ...`` (``[ceil(T / C), N, R, K]``) and, per step, ``[phi(q) - phi(k), phi(x)]``,
    ``[phi(q), phi(k)]``, ``W (phi(q) - phi(k))`` and the four learning rates. Without it each
    per-step vector goes to one buffer that every step reuses, and no weights are kept.
    """
    B, T, H, K = x.shape
    R, N = weight.shape[2], B * H
    groups = _row_groups(K, x.device)
    checkpoints = x.new_empty(-(-T // interval) if save else 1, N, R, K)
    checkpoints[0] = rearrange(weight, "b h r k -> (b h) r k")
    final = x.new_empty(B, H, R, K)
    # where step t writes the weights after it: two scratch matrices in turn, a checkpoint slot
    # every C steps, the returned tensor last; step t reads what step t - 1 wrote
    scratch, slots = x.new_empty(2, N, R, K).unbind(0), checkpoints.unbind(0)
    dests = [scratch[t % 2] for t in range(1, T + 1)]
    for c in range(1, len(slots)):
        dests[c * interval - 1] = slots[c]
    dests[-1] = rearrange(final, "b h r k -> (b h) r k")
    # [phi(q) - phi(k), phi(x)] per step: the two vectors of the backward's rank-two update
    d_and_px = x.new_empty(T, N, 2, K)
    d_and_px[:, :, 1] = rearrange(torch.softmax(x, dim=-1), "b t h k -> t (b h) k")
    out = x.new_empty(T, N, R)  # W_{t-1} phi(x_t): rows [y; q; k; beta]
    # softmax of q and of k; W_{t-1} (phi(q) - phi(k)); the four learning rates: one row per step
    # when saved, else a single row that every step overwrites
    n = T if save else 1
    phi, u, lr = x.new_empty(n, N, 2, K), x.new_empty(n, N, R), x.new_empty(n, N, 4)
    lr_rows, delta = x.new_empty(N, R), x.new_empty(N, R)  # delta = lr (W phi(q) - W phi(k))
    delta_col = delta.unsqueeze(-1)

    def steps(buf: Tensor) -> Iterable[Tensor]:
        return buf.unbind(0) if len(buf) == T else itertools.repeat(buf[0], T)

    # every per-step view is cut before the loop (one op for all steps): on a GPU the loop's time
    # is the ops it dispatches, views included
    loop = zip(
        [slots[0], *dests[:-1]],
        dests,
        *map(steps, (d_and_px[:, :, 1, :, None], out[..., None], out[:, :, K : 3 * K].unflatten(-1, (2, K)))),
        *map(steps, (out[:, :, 3 * K :], phi, phi[:, :, 1:], d_and_px[:, :, 0], u[..., None], u, lr)),
    )
    for W, W_new, px, o, o_qk, o_beta, ph, phi_k, d, u_col, u_t, s in loop:
        torch.bmm(W, px, out=o)
        torch.ops.aten._softmax.out(o_qk, -1, False, out=ph)
        torch.sub(ph[:, 0], ph[:, 1], out=d)
        torch.bmm(W, d.unsqueeze(-1), out=u_col)
        torch.sigmoid(o_beta, out=s)
        torch.index_select(s, 1, groups, out=lr_rows)
        torch.mul(lr_rows, u_t, out=delta)
        torch.baddbmm(W, delta_col, phi_k, out=W_new)
    y = rearrange(out[:, :, :K], "t (b h) k -> b t h k", b=B).contiguous()
    return y, final, (checkpoints, d_and_px, phi, u, lr, groups) if save else ()


class _SRWMLoop(torch.autograd.Function):
    """The SRWM step loop with a backward that walks the steps in reverse (no autograd graph).

    Saved for the backward: the weights every ``C`` steps and the per-step vectors of
    :func:`_forward_loop`; the backward rebuilds each segment's weights from them.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, interval: int):
        y, final, saved = _forward_loop(x, weight, interval, save=True)
        ctx.save_for_backward(*saved)
        ctx.interval = interval
        return y, final

    @staticmethod
    @once_differentiable
    def backward(ctx, gy: Tensor, g_weight: Tensor):
        checkpoints, d_and_px, phi, u, lr, groups = ctx.saved_tensors
        (T, N, _, K), R, C, B = phi.shape, u.shape[-1], ctx.interval, gy.shape[0]
        gy_steps = rearrange(gy, "b t h k -> t (b h) k")
        # [R, 4]: which learning rate scales each row, to sum a rate's gradient over its rows
        group_sum = torch.nn.functional.one_hot(groups, 4).to(gy.dtype)
        G = rearrange(g_weight, "b h r k -> (b h) r k").clone()  # d/d W_t, carried backwards
        g_x = gy.new_empty(T, N, K)
        weights = gy.new_empty(C, N, R, K)  # the weights before each step of one segment
        # [d/d u, d/d (W phi(x))] per step of one segment; the y rows of the latter are gy's
        g_u_out = gy.new_empty(C, N, 2, R)
        g_phi = gy.new_empty(N, 2, K)  # [d/d phi(q), d/d phi(k)]
        g_phi_q, g_phi_k = g_phi.unbind(1)
        g_phi_q_row, g_phi_k_row = g_phi.split(1, dim=1)
        g_qk = gy.new_empty(N, 2, K)  # [d/d q, d/d k]
        g_delta = gy.new_empty(N, R, 1)  # d/d delta, as a column and as a row
        g_delta_row, g_delta_flat = g_delta.view(N, 1, R), g_delta.view(N, R)
        for c in range(len(checkpoints) - 1, -1, -1):
            start, stop = c * C, min(c * C + C, T)
            L = stop - start
            # the forward's update factors, recomputed by the same elementwise ops (same values)
            s = lr[start:stop]
            lr_rows = s.index_select(-1, groups)
            delta = lr_rows * u[start:stop]
            W = weights[:L]
            W[0].copy_(checkpoints[c])
            for W_t, W_next, d_col, phi_k in zip(
                W[:-1], W[1:], delta[..., None].unbind(0), phi[start:stop, :, 1:].unbind(0)
            ):
                torch.baddbmm(W_t, d_col, phi_k, out=W_next)
            # delta = lr_rows u and lr = sigmoid(beta): d/d beta_j = sum over rows r of rate j of
            # d/d delta_r u_r lr_j (1 - lr_j), one [R] x [R, 4] product per step
            to_beta = u[start:stop, :, :, None] * group_sum * (s * (1 - s))[:, :, None, :]  # [L, N, R, 4]
            g = g_u_out[:L]
            g[:, :, 1, :K] = gy_steps[start:stop]
            # per-step views cut once per segment (see the forward), walked in reverse
            views = (
                W,
                phi[start:stop],
                phi[start:stop, :, 1, :, None],
                delta[:, :, None],
                to_beta,
                lr_rows,
                g[:, :, 0],  # d/d u
                g[:, :, :1],  # d/d u as a row
                g[:, :, 1, None, 3 * K :],  # d/d beta
                g[:, :, 1, K : 3 * K],  # d/d q, d/d k
                g.transpose(2, 3),
                d_and_px[start:stop],
            )
            for W_t, ph, phi_k, delta_row, to_b, lr_r, g_u, g_u_row, g_b, g_o_qk, g_t, dpx in zip(
                *(reversed(v.unbind(0)) for v in views)
            ):
                # W_t = W_{t-1} + delta phi(k)^T
                torch.bmm(G, phi_k, out=g_delta)
                torch.bmm(delta_row, G, out=g_phi_k_row)
                torch.bmm(g_delta_row, to_b, out=g_b)
                torch.mul(g_delta_flat, lr_r, out=g_u)
                # u = W (phi(q) - phi(k))
                torch.bmm(g_u_row, W_t, out=g_phi_q_row)
                g_phi_k.sub_(g_phi_q)
                # into a contiguous buffer: the CPU kernel ignores the strides of a strided out=
                torch.ops.aten._softmax_backward_data.out(g_phi, ph, -1, gy.dtype, grad_input=g_qk)
                g_o_qk.copy_(g_qk.view(N, 2 * K))
                # W reads u = W d and out = W phi(x): d/d W_{t-1} gains g_u d^T + g_o phi(x)^T
                G.baddbmm_(g_t, dpx)
            # phi(x)'s gradient for the whole segment: W_{t-1}^T d/d out_t, then the softmax
            g_px = torch.bmm(
                rearrange(g[:, :, 1], "t n r -> (t n) 1 r"), rearrange(W, "t n r k -> (t n) r k")
            )
            g_x[start:stop] = torch.ops.aten._softmax_backward_data(
                g_px.view(L, N, K), d_and_px[start:stop, :, 1], -1, gy.dtype
            )
        g_x = rearrange(g_x, "t (b h) k -> b t h k", b=B)
        return g_x, rearrange(G, "(b h) r k -> b h r k", b=B), None


def srwm_recurrent(
    x: Tensor, weight: Tensor, *, checkpoint_every: int | None = None
) -> tuple[Tensor, Tensor]:
    """All steps through the fused loop: returns ``(y: [B, T, H, K], final weights: [B, H, R, K])``.

    Differentiable once (the backward is hand-written; no double backward). When a gradient is
    needed, the weights are kept every ``checkpoint_every`` steps (default ``ceil(sqrt(T))``, which
    holds the fewest) and recomputed in between by the backward; it changes memory, not results.
    """
    if checkpoint_every is not None:
        check_positive_int("srwm_recurrent", "checkpoint_every", checkpoint_every)
    T = x.shape[1]
    if T == 0:
        return x.new_zeros(x.shape), weight
    weight = weight.to(x.dtype)  # one dtype inside the loop, as under autocast
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return _SRWMLoop.apply(x, weight, checkpoint_every or checkpoint_interval(T))
    y, final, _ = _forward_loop(x, weight, T, save=False)
    return y, final
