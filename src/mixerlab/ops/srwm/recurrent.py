"""The self-referential weight matrix, "A Modern Self-Referential Weight Matrix That Learns to
Modify Itself" (arXiv:2202.05780): one step, and the fused step loop with a hand-written backward.

The update is nonlinear in the weights (the queries, keys and learning rates that modify ``W``
are produced by ``W`` itself and pass through a softmax), so there is no chunkwise-parallel form:
the authors train it sequentially too (a custom CUDA kernel that loops over time). On a GPU such a
loop costs kernel launches per step, so :func:`srwm_recurrent` launches few:

- ``phi(x)`` for all ``T``, the output rows, the gradient of ``x`` and the part of the backward
  that reads no later step are single ops over the whole sequence;
- ``W phi(q) - W phi(k)`` is one matrix-vector product ``W (phi(q) - phi(k))``; a forward step is
  8 ops (3 of them batched matmuls over batch and heads), written into preallocated buffers;
- the backward walks the steps in reverse with 12 ops per step (the two rank-one updates of the
  weights' gradient in one ``baddbmm``) instead of autograd's graph of about 27 nodes per step.

Shapes: ``x: [B, T, H, K]``, weights ``[B, H, R, K]`` with ``R = 3K + 4`` rows ``[y; q; k; beta]``;
inside the loop batch and heads are one axis ``N = B H``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor
from torch.autograd.function import once_differentiable


def _row_groups(K: int, device: torch.device) -> Tensor:
    """``[R]``: which of the four learning rates (``y, q, k, beta`` rows) scales each row."""
    return torch.arange(4).repeat_interleave(torch.tensor([K, K, K, 4])).to(device)


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


class _SRWMLoop(torch.autograd.Function):
    """The SRWM step loop with a backward that walks the steps in reverse (no autograd graph).

    Saved for the backward: the weights before every step (``T N R K`` values, as autograd keeps
    for the plain loop) and the per-step vectors ``W phi(x)``, ``phi(q), phi(k)``,
    ``phi(q) - phi(k)``, ``W (phi(q) - phi(k))``, the learning rates and the update.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor):
        B, T, H, K = x.shape
        R, N = weight.shape[2], B * H
        groups = _row_groups(K, x.device)
        weights = x.new_empty(T + 1, N, R, K)
        weights[0] = rearrange(weight, "b h r k -> (b h) r k")
        # [phi(q) - phi(k), phi(x)] per step: the two vectors of the backward's rank-two update
        d_and_px = x.new_empty(T, N, 2, K)
        d_and_px[:, :, 1] = rearrange(torch.softmax(x, dim=-1), "b t h k -> t (b h) k")
        out = x.new_empty(T, N, R)  # W_{t-1} phi(x_t): rows [y; q; k; beta]
        phi = x.new_empty(T, N, 2, K)  # softmax of q and of k
        u = x.new_empty(T, N, R)  # W_{t-1} (phi(q) - phi(k))
        lr = x.new_empty(T, N, 4)
        lr_rows = x.new_empty(T, N, R)
        delta = x.new_empty(T, N, R)  # lr (W phi(q) - W phi(k)), the update's row factor
        steps = zip(
            *(buf.unbind(0) for buf in (weights[:-1], weights[1:], d_and_px, out, phi, u, lr, lr_rows, delta))
        )
        for W, W_new, dpx, o, ph, u_t, s, s_rows, dl in steps:
            d, px = dpx.unbind(1)
            torch.bmm(W, px.unsqueeze(-1), out=o.unsqueeze(-1))
            torch.ops.aten._softmax.out(o[:, K : 3 * K].view(N, 2, K), -1, False, out=ph)
            phi_q, phi_k = ph.unbind(1)
            torch.sub(phi_q, phi_k, out=d)
            torch.bmm(W, d.unsqueeze(-1), out=u_t.unsqueeze(-1))
            torch.sigmoid(o[:, 3 * K :], out=s)
            torch.index_select(s, 1, groups, out=s_rows)
            torch.mul(s_rows, u_t, out=dl)
            torch.baddbmm(W, dl.unsqueeze(-1), phi_k.unsqueeze(1), out=W_new)
        ctx.save_for_backward(weights, d_and_px, out, phi, u, lr, lr_rows, delta, groups)
        y = rearrange(out[:, :, :K], "t (b h) k -> b t h k", b=B).contiguous()
        return y, rearrange(weights[T], "(b h) r k -> b h r k", b=B).clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, gy: Tensor, g_weight: Tensor):
        weights, d_and_px, out, phi, u, lr, lr_rows, delta, groups = ctx.saved_tensors
        T, N, R, K = weights.shape[0] - 1, *weights.shape[1:]
        B = gy.shape[0]
        group_sum = torch.nn.functional.one_hot(groups, 4).to(gy.dtype)  # [R, 4]: rows -> rate
        # [d/d u, d/d (W phi(x))] per step; the y rows of the latter are the output's gradient
        g_u_out = gy.new_zeros(T, N, 2, R)
        g_u_out[:, :, 1, :K] = rearrange(gy, "b t h k -> t (b h) k")
        G = rearrange(g_weight, "b h r k -> (b h) r k").clone()  # d/d W_t, carried backwards
        for t in range(T - 1, -1, -1):
            W, phi_k = weights[t], phi[t, :, 1]
            g_u, g_o = g_u_out[t].unbind(1)
            # W_t = W_{t-1} + delta phi(k)^T
            g_delta = torch.bmm(G, phi_k.unsqueeze(-1)).squeeze(-1)  # [N, R]
            g_phi_k = torch.bmm(delta[t].unsqueeze(1), G)  # [N, 1, K]
            # delta = lr_rows * u; each rate's gradient sums its rows
            g_lr = torch.mm(g_delta * u[t], group_sum)
            torch.ops.aten.sigmoid_backward.grad_input(g_lr, lr[t], grad_input=g_o[:, 3 * K :])
            torch.mul(g_delta, lr_rows[t], out=g_u)
            # u = W (phi(q) - phi(k))
            g_d = torch.bmm(g_u.unsqueeze(1), W)  # [N, 1, K]
            g_phi = torch.cat([g_d, g_phi_k - g_d], dim=1)  # [N, 2, K]
            g_qk = torch.ops.aten._softmax_backward_data(g_phi, phi[t], -1, gy.dtype)
            g_o[:, K : 3 * K].copy_(g_qk.view(N, 2 * K))
            # W reads u = W d and out = W phi(x): d/d W_{t-1} gains g_u d^T + g_o phi(x)^T
            G.baddbmm_(g_u_out[t].transpose(1, 2), d_and_px[t])
        # phi(x)'s gradient for every step at once: W_{t-1}^T d/d out_t, then through the softmax
        g_px = torch.bmm(
            rearrange(g_u_out[:, :, 1], "t n r -> (t n) 1 r"), rearrange(weights[:-1], "t n r k -> (t n) r k")
        )
        px = d_and_px[:, :, 1]
        g_x = torch.ops.aten._softmax_backward_data(g_px.view(T, N, K), px, -1, gy.dtype)
        g_x = rearrange(g_x, "t (b h) k -> b t h k", b=B)
        return g_x, rearrange(G, "(b h) r k -> b h r k", b=B)


def srwm_recurrent(x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """All steps through the fused loop: returns ``(y: [B, T, H, K], final weights: [B, H, R, K])``.

    Differentiable once (the backward is hand-written; no double backward).
    """
    if x.shape[1] == 0:
        return x.new_zeros(x.shape), weight
    return _SRWMLoop.apply(x, weight.to(x.dtype))  # one dtype inside the loop, as under autocast
