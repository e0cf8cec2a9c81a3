"""sLSTM ops: the vectorised step loop and the one-step form against the per-head reference, and
the reference against the unstabilised equations."""

from __future__ import annotations

import torch

from mixerlab.bench.op_count import ops_per_step
from mixerlab.ops.slstm import slstm_recurrent, slstm_reference, slstm_sequential

B, T, H, D = 2, 21, 3, 4


def _inputs(seed: int = 0, T: int = T):
    g = torch.Generator().manual_seed(seed)
    wx = torch.randn(B, T, H, 4, D, generator=g, dtype=torch.float64) * 2
    R = torch.randn(H, D, 4, D, generator=g, dtype=torch.float64) * 0.5
    return wx, R


def _close(a, b, what):
    torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9, msg=lambda m: f"{what}: {m}")


def test_sequential_matches_reference_with_state_and_gradients():
    wx, R = (t.requires_grad_() for t in _inputs())
    _, state = slstm_reference(*_inputs(seed=1, T=5))
    y_ref, s_ref = slstm_reference(wx, R, state=state)
    y, s = slstm_sequential(wx, R, state=state)
    _close(y, y_ref, "output")
    for a, b, key in zip(s, s_ref, "cnmh"):
        _close(a, b, f"state {key}")
    g = torch.randn_like(y)
    for a, b, name in zip(
        torch.autograd.grad(y, (wx, R), g), torch.autograd.grad(y_ref, (wx, R), g), ["wx", "R"]
    ):
        _close(a, b, f"d{name}")


def test_recurrent_steps_match_reference():
    wx, R = _inputs()
    y_ref, s_ref = slstm_reference(wx, R)
    state = tuple(wx.new_zeros(B, H, D) for _ in range(4))
    ys = []
    for t in range(T):
        h, state = slstm_recurrent(wx[:, t], R, state)
        ys.append(h)
    _close(torch.stack(ys, 1), y_ref, "steps")


def test_reference_equals_the_unstabilised_equations():
    wx, R = _inputs()
    y, _ = slstm_reference(wx, R)
    c = n = h = wx.new_zeros(B, H, D)
    outs = []
    for t in range(T):
        pre = wx[:, t] + torch.einsum("bhj,hjgi->bhgi", h, R)
        i, f, z, o = pre.unbind(2)
        c = torch.sigmoid(f) * c + i.exp() * torch.tanh(z)
        n = torch.sigmoid(f) * n + i.exp()
        h = torch.sigmoid(o) * c / n
        outs.append(h)
    _close(y, torch.stack(outs, 1), "outputs vs raw equations")


def _random_state(seed: int):
    """A state the loop could have reached: the reference run over a few random steps."""
    _, state = slstm_reference(*_inputs(seed=seed, T=4))
    return tuple(s.clone().requires_grad_() for s in state)


def test_fused_loop_gradients_of_every_input_and_the_final_state():
    """Outputs and every final state enter the loss, so the hand-written backward's paths through
    ``c, n, m`` (the stabiliser included) and into the initial state are all checked."""
    wx, R = (t.requires_grad_() for t in _inputs(seed=2))
    state = _random_state(seed=3)
    y_ref, s_ref = slstm_reference(wx, R, state=state)
    y, s = slstm_sequential(wx, R, state=state)
    g = torch.Generator().manual_seed(4)
    weights = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in (y, *s)]

    def loss(outs):
        return sum((o * w).sum() for o, w in zip(outs, weights))

    inputs = (wx, R, *state)
    grads = torch.autograd.grad(loss((y, *s)), inputs)
    grads_ref = torch.autograd.grad(loss((y_ref, *s_ref)), inputs)
    for a, b, name in zip(grads, grads_ref, ["wx", "R", "c0", "n0", "m0", "h0"]):
        _close(a, b, f"d{name}")


def test_fused_loop_one_token_and_split_sequence_match_one_call():
    wx, R = _inputs(seed=5)
    y_ref, s_ref = slstm_reference(wx, R)
    y1, state = slstm_sequential(wx[:, :1], R)  # T = 1 from the empty state
    y2, state = slstm_sequential(wx[:, 1:9], R, state=state)
    ys = [y1, y2]
    for t in range(9, T):  # decoding, one token per call
        y_t, state = slstm_sequential(wx[:, t : t + 1], R, state=state)
        ys.append(y_t)
    _close(torch.cat(ys, 1), y_ref, "outputs")
    for a, b, key in zip(state, s_ref, "cnmh"):
        _close(a, b, f"state {key}")
    y0, s0 = slstm_sequential(wx[:, :0], R, state=state)
    assert y0.shape == (B, 0, H, D) and all(a is b for a, b in zip(s0, state))


def test_fused_loop_ops_per_step():
    """Structure, not time: a forward step is one batched matmul for all heads and gates plus 12
    pointwise ops (the autograd loop dispatched 19), a backward step one batched matmul plus 17
    (autograd's per-step graph dispatched 44)."""
    wx, R = _inputs()

    def forward(T_: int):
        with torch.no_grad():
            slstm_sequential(wx[:, :T_], R)

    def forward_backward(T_: int):
        w = wx[:, :T_].detach().requires_grad_()
        y, _ = slstm_sequential(w, R)
        y.sum().backward()

    fwd = ops_per_step(forward)
    assert fwd.kernels <= 13 and fwd.by_name["baddbmm"] == 1 and "bmm" not in fwd.by_name, fwd
    both = ops_per_step(forward_backward)
    assert both.kernels <= 13 + 18 and both.by_name["baddbmm"] == 2, both
