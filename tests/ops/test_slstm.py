"""sLSTM ops: the vectorised step loop and the one-step form against the per-head reference, and
the reference against the unstabilised equations."""

from __future__ import annotations

import torch

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
