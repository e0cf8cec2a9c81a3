"""sLSTM, "xLSTM: Extended Long Short-Term Memory" (arXiv:2405.04517): one step, and the fused step
loop with a hand-written backward (the fast form).

Conventions as in :mod:`mixerlab.ops.slstm.reference`. The recurrent connections make each step
depend non-linearly on the previous output, so the sLSTM has no parallel form; the paper trains it
sequentially too (its CUDA kernel fuses this same loop). On a GPU a step loop costs kernel launches
per step, so :func:`slstm_sequential` is built to launch few:

- everything that does not depend on ``h_{t-1}`` is done once for all ``T`` (the input
  contributions arrive precomputed; layout changes, the gradient of ``R`` and of ``wx`` are single
  ops over the whole sequence);
- a forward step is one ``baddbmm`` for every head and gate (block-diagonal ``R`` as a batched
  matmul) and 12 in-place or ``out=`` pointwise ops into preallocated buffers;
- a backward step walks the steps in reverse with the same batched layout (one ``baddbmm`` and
  17 pointwise ops) instead of autograd's graph of about 40 nodes per step.

Shapes: ``wx: [B, T, H, 4, Dh]`` (gates ``i, f, z, o``); ``R: [H, Dh, 4, Dh]``; state
``(c, n, m, h)`` each ``[B, H, Dh]``. Inside the loop: ``[T, H, B, 4, Dh]`` with the gates reordered
to ``(z, o, i, f)`` so that ``i`` and ``f`` sit side by side and the stabiliser takes one op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor
from torch.autograd.function import once_differentiable

from mixerlab.ops.slstm.reference import SLSTMState

# internal gate slot k holds the paper's gate _GATES[k] (i=0, f=1, z=2, o=3); it is its own inverse
_GATES = (2, 3, 0, 1)


def _step(wx_t: Tensor, R_flat: Tensor, state: SLSTMState) -> SLSTMState:
    c, n, m, h = state
    # [H, B, Dh] @ [H, Dh, 4 Dh] -> [H, B, 4 Dh]: one matmul for every head and gate.
    rec = torch.bmm(rearrange(h, "b h d -> h b d"), R_flat)
    pre = wx_t + rearrange(rec, "h b (g d) -> b h g d", g=4)
    i_t, f_t, z_t, o_t = pre.unbind(2)
    log_f = F.logsigmoid(f_t)
    m_new = torch.maximum(log_f + m, i_t)
    i_p = torch.exp(i_t - m_new)
    f_p = torch.exp(log_f + m - m_new)
    c = f_p * c + i_p * torch.tanh(z_t)
    n = f_p * n + i_p
    h = torch.sigmoid(o_t) * c / n
    return c, n, m_new, h


def slstm_recurrent(wx_t: Tensor, R: Tensor, state: SLSTMState) -> tuple[Tensor, SLSTMState]:
    """One decoding step: ``wx_t: [B, H, 4, Dh]`` -> ``(h [B, H, Dh], state)``."""
    state = _step(wx_t, rearrange(R, "h j g i -> h j (g i)"), state)
    return state[3], state


def _to_loop_layout(t: Tensor) -> Tensor:
    """``[B, H, Dh]`` -> ``[H, B, Dh]``."""
    return rearrange(t, "b h d -> h b d")


class _SLSTMLoop(torch.autograd.Function):
    """The sLSTM step loop with a backward that walks the steps in reverse (no autograd graph).

    Saved for the backward: the activated gates ``(tanh z, sigmoid o, i', f')`` and
    ``logsigmoid(f~)`` per step, and the states ``(c, n, m, h)`` at every step (``8 T B D`` values,
    less than autograd keeps for the same loop).
    """

    @staticmethod
    def forward(ctx, wx: Tensor, R: Tensor, c0: Tensor, n0: Tensor, m0: Tensor, h0: Tensor):
        B, T, H, _, Dh = wx.shape
        gates = list(_GATES)
        # [B, T, H, 4, Dh] -> [T, H, B, 4 Dh], gates (z, o, i, f): one copy for the whole sequence
        wx_loop = rearrange(wx[:, :, :, gates], "b t h g d -> t h b (g d)").contiguous()
        R_loop = rearrange(R[:, :, gates], "h j g i -> h j (g i)").contiguous()  # [H, Dh, 4 Dh]
        act = wx.new_empty(T, H, B, 4, Dh)  # pre-activations, then the activated gates in place
        log_f = wx.new_empty(T, H, B, Dh)
        states = wx.new_empty(T + 1, 4, H, B, Dh)  # (c, n, m, h) before step 0 and after each step
        torch.stack([_to_loop_layout(s) for s in (c0, n0, m0, h0)], out=states[0])
        # one unbind each instead of an index op per step and tensor
        for wx_t, g, lf, prev, cur in zip(
            wx_loop.unbind(0), act.unbind(0), log_f.unbind(0), states[:-1], states[1:]
        ):
            c_prev, n_prev, m_prev, h_prev = prev.unbind(0)
            c, n, m, h = cur.unbind(0)
            torch.baddbmm(wx_t, h_prev, R_loop, out=g.view(H, B, 4 * Dh))  # every head and gate
            z, o, _, f = g.unbind(2)
            torch._C._nn.log_sigmoid(f, out=lf)
            torch.add(lf, m_prev, out=f)  # the f slot now holds log f + m_{t-1}
            i_and_f = g[:, :, 2:]
            torch.amax(i_and_f, dim=2, out=m)  # m_t = max(log f + m_{t-1}, i~)
            i_and_f.sub_(m.unsqueeze(2)).exp_()  # (i', f') in place
            tz, so, ip, fp = z.tanh_(), o.sigmoid_(), *i_and_f.unbind(2)
            torch.addcmul(ip * tz, fp, c_prev, out=c)
            torch.addcmul(ip, fp, n_prev, out=n)
            torch.div(so * c, n, out=h)
        ctx.save_for_backward(act, log_f, states, R_loop)
        y = rearrange(states[1:, 3], "t h b d -> b t h d").contiguous()
        final = tuple(rearrange(s, "h b d -> b h d").contiguous() for s in states[T])
        return (y, *final)

    @staticmethod
    @once_differentiable
    def backward(ctx, gy: Tensor, g_c: Tensor, g_n: Tensor, g_m: Tensor, g_h: Tensor):
        act, log_f, states, R_loop = ctx.saved_tensors
        T, H, B, _, Dh = act.shape
        # sigmoid(-f~) = 1 - exp(logsigmoid(f~)): d logsigmoid(f~) / d f~, for all steps at once
        sig_neg_f = torch.expm1(log_f).neg_()
        # which of (i~, log f + m_{t-1}) was the max: the one whose exp came out exactly 1; on a
        # tie the whole gradient goes to the forget side (torch.maximum would split it in halves)
        f_won = act[:, :, :, 3] == 1
        route = torch.stack([~f_won, f_won], dim=3).to(act.dtype)  # [T, H, B, 2, Dh] for (i, f)
        gy_loop = rearrange(gy, "b t h d -> t h b d")
        g_pre = act.new_empty(T, H, B, 4, Dh)
        g_cn = torch.stack([_to_loop_layout(g_c), _to_loop_layout(g_n)])  # [2, H, B, Dh]
        g_m = _to_loop_layout(g_m).clone()
        g_hcur = _to_loop_layout(g_h) + gy_loop[T - 1]
        R_t = R_loop.transpose(1, 2)  # [H, 4 Dh, Dh]
        for t in range(T - 1, -1, -1):
            tz, so, ip, fp = act[t].unbind(2)
            c_prev, n_prev = states[t, 0], states[t, 1]
            c, n, _, h = states[t + 1].unbind(0)
            gp = g_pre[t]
            gz, go, gi, gf = gp.unbind(2)
            gc, gn = g_cn.unbind(0)
            r = g_hcur / n
            gc.addcmul_(r, so)  # h = so c / n
            gn.addcmul_(r, h, value=-1)
            torch.ops.aten.sigmoid_backward.grad_input(r * c, so, grad_input=go)
            torch.ops.aten.tanh_backward.grad_input(gc * ip, tz, grad_input=gz)
            torch.addcmul(gn, gc, tz, out=gi)  # d/d i'
            torch.addcmul(gc * c_prev, gn, n_prev, out=gf)  # d/d f'
            g_if = gp[:, :, 2:]
            g_if.mul_(act[t, :, :, 2:])  # through exp: now d/d i~ and d/d (log f + m_{t-1}), m held
            g_mt = g_m - g_if.sum(2)  # m_t enters i' and f' with a minus sign
            g_if.addcmul_(g_mt.unsqueeze(2), route[t])  # ... and is the max of the two
            g_m = gf.clone()  # log f + m_{t-1}: the same gradient reaches m_{t-1} ...
            gf.mul_(sig_neg_f[t])  # ... and f~ through logsigmoid
            g_cn.mul_(fp)
            flat = gp.view(H, B, 4 * Dh)
            g_hcur = torch.baddbmm(gy_loop[t - 1], flat, R_t) if t > 0 else torch.bmm(flat, R_t)
        # R's gradient for all steps in one batched matmul: sum_t h_{t-1}^T g_pre_t per head
        h_prev = rearrange(states[:T, 3], "t h b d -> h d (t b)")
        g_R = torch.bmm(h_prev, rearrange(g_pre, "t h b g d -> h (t b) (g d)"))
        g_R = rearrange(g_R, "h j (g i) -> h j g i", g=4)[:, :, list(_GATES)]
        g_wx = rearrange(g_pre, "t h b g d -> b t h g d")[:, :, :, list(_GATES)]
        init = (rearrange(s, "h b d -> b h d") for s in (g_cn[0], g_cn[1], g_m, g_hcur))
        return (g_wx, g_R, *init)


def slstm_sequential(wx: Tensor, R: Tensor, *, state: SLSTMState | None = None) -> tuple[Tensor, SLSTMState]:
    """All steps: ``wx: [B, T, H, 4, Dh]`` -> ``(h [B, T, H, Dh], state)``, through the fused loop.

    Differentiable once (the backward is hand-written; no double backward).
    """
    B, T, H, _, Dh = wx.shape
    if state is None:
        state = tuple(wx.new_zeros(B, H, Dh) for _ in range(4))
    if T == 0:
        return wx.new_zeros(B, 0, H, Dh), tuple(state)
    # one dtype inside the loop (under autocast ``wx`` comes out of a projection in bf16 while ``R``
    # stays float32); autograd casts the gradients back
    y, *final = _SLSTMLoop.apply(wx, R.to(wx.dtype), *(s.to(wx.dtype) for s in state))
    return y, tuple(final)
