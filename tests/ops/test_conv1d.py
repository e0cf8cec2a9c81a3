"""Short causal depthwise conv: fast and one-step forms against the loop, state carrying, taps."""

from __future__ import annotations

import pytest
import torch

from mixerlab.ops.conv1d import causal_conv1d, causal_conv1d_recurrent, causal_conv1d_reference


def _data(W: int, T: int = 11, B: int = 2, C: int = 3):
    g = torch.Generator().manual_seed(W)
    x = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    weight = torch.randn(C, W, generator=g, dtype=torch.float64)
    bias = torch.randn(C, generator=g, dtype=torch.float64)
    state = torch.randn(B, W - 1, C, generator=g, dtype=torch.float64)
    return x, weight, bias, state


@pytest.mark.parametrize("W", [1, 2, 4, 9, 16])  # 9 and 16 take the F.conv1d path
@pytest.mark.parametrize("with_state", [False, True])
def test_fast_matches_reference(W, with_state):
    x, weight, bias, state = _data(W)
    state = state if with_state else None
    x.requires_grad_()
    y, s = causal_conv1d(x, weight, bias, state)
    y_ref, s_ref = causal_conv1d_reference(x, weight, bias, state)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(s, s_ref)
    g = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, g)
    (dx_ref,) = torch.autograd.grad(y_ref, x, g)
    torch.testing.assert_close(dx, dx_ref)


@pytest.mark.parametrize("W", [1, 4])
def test_steps_and_splits_match_one_call(W):
    x, weight, bias, _ = _data(W)
    y_full, s_full = causal_conv1d(x, weight, bias)
    state, ys = None, []
    for t in range(x.shape[1]):
        y, state = causal_conv1d_recurrent(x[:, t : t + 1], weight, bias, state)
        ys.append(y)
    torch.testing.assert_close(torch.cat(ys, dim=1), y_full)
    torch.testing.assert_close(state, s_full)
    y1, s1 = causal_conv1d(x[:, :2], weight, bias)
    y2, s2 = causal_conv1d(x[:, 2:], weight, bias, s1)
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y_full)
    torch.testing.assert_close(s2, s_full)


def test_tap_convention_last_tap_is_current_token():
    x, _, _, _ = _data(3)
    identity = torch.zeros(x.shape[2], 3, dtype=x.dtype)
    identity[:, -1] = 1
    y, state = causal_conv1d(x, identity)
    torch.testing.assert_close(y, x)
    torch.testing.assert_close(state, x[:, -2:])
    delay = torch.zeros_like(identity)
    delay[:, 0] = 1  # first tap reads two tokens back
    y, _ = causal_conv1d(x, delay)
    torch.testing.assert_close(y[:, 2:], x[:, :-2])
    assert (y[:, :2] == 0).all()


def test_empty_input_keeps_the_state():
    weight = torch.randn(3, 4, dtype=torch.float64)
    state = torch.randn(2, 3, 3, dtype=torch.float64)
    y, new_state = causal_conv1d(torch.zeros(2, 0, 3, dtype=torch.float64), weight, None, state)
    assert y.shape == (2, 0, 3)
    torch.testing.assert_close(new_state, state)
