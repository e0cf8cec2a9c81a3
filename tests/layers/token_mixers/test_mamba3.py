"""Mamba-3: with ``lam = 1`` and no rotation it is Mamba-2's SSM; with no input the rotary state
turns and only the decay changes its norm; ``lam`` mixes in the previous input; fixed-size state."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.ops.mamba3 import mamba3_chunk, mamba3_reference, rotate
from mixerlab.ops.ssd import ssd_reference

B, T, H, P, N = 2, 11, 2, 3, 4
OPS = [mamba3_reference, lambda *a, **k: mamba3_chunk(*a, **k, chunk_size=4)]


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, H, P, generator=g, dtype=torch.float64)
    dt = torch.rand(B, T, H, generator=g, dtype=torch.float64) + 0.1
    A = -torch.rand(H, generator=g, dtype=torch.float64) - 0.5
    B_, C_ = (torch.randn(B, T, N, generator=g, dtype=torch.float64) for _ in range(2))
    theta = torch.randn(B, T, N // 2, generator=g, dtype=torch.float64)
    return x, dt, A, B_, C_, theta


def _zero_state():
    return (
        torch.zeros(B, H, P, N, dtype=torch.float64),
        torch.zeros(B, H, P, dtype=torch.float64),
        torch.zeros(B, N, dtype=torch.float64),
    )


@pytest.mark.parametrize("op", OPS)
def test_euler_rule_without_rotation_is_mamba2(op):
    x, dt, A, B_, C_, theta = _inputs()
    ones = torch.ones(B, T, H, dtype=torch.float64)
    y, (h, *_) = op(x, dt, A, ones, torch.zeros_like(theta), B_, C_, state=_zero_state())
    y2, h2 = ssd_reference(x, dt, A, B_, C_)
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(h, h2)


@pytest.mark.parametrize("op", OPS)
def test_rotary_state_turns_and_only_decays(op):
    x, dt, _, B_, C_, theta = _inputs(1)
    h0 = torch.randn(B, H, P, N, dtype=torch.float64)
    state = (h0, torch.zeros(B, H, P, dtype=torch.float64), torch.zeros(B, N, dtype=torch.float64))
    A = torch.full((H,), -0.01, dtype=torch.float64)  # slow decay (the chunked form needs A < 0)
    _, (h, *_) = op(
        torch.zeros_like(x),
        dt,
        A,
        torch.rand(B, T, H, dtype=torch.float64),
        theta,
        B_,
        C_,
        state=state,
    )
    total = (dt[..., None] * theta[:, :, None, :]).sum(1)[:, :, None, :]  # [B, H, 1, N/2]
    decay = torch.exp(A * dt.sum(1))[..., None, None]  # [B, H, 1, 1]
    torch.testing.assert_close(h, decay * rotate(h0, total))
    torch.testing.assert_close(h.norm(dim=(-2, -1)), decay[..., 0, 0] * h0.norm(dim=(-2, -1)))


def test_trapezoid_reads_the_previous_input():
    x, dt, A, B_, C_, theta = _inputs(2)
    lam = torch.full((B, T, H), 0.5, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 4] += 1.0  # changes the step-4 input; the Euler rule (lam = 1) would see it from step 4 on
    y, _ = mamba3_reference(x, dt, A, lam, theta, B_, C_, state=_zero_state())
    y2, _ = mamba3_reference(x2, dt, A, lam, theta, B_, C_, state=_zero_state())
    torch.testing.assert_close(y2[:, :4], y[:, :4])
    # at step 5 the trapezoid's beta term carries x_4 directly as well as through the state
    ones = torch.ones_like(lam)
    y3, _ = mamba3_reference(x, dt, A, ones, theta, B_, C_, state=_zero_state())
    y4, _ = mamba3_reference(x2, dt, A, ones, theta, B_, C_, state=_zero_state())
    assert not torch.allclose(y2[:, 5] - y[:, 5], y4[:, 5] - y3[:, 5])


def test_state_size_is_constant_and_odd_state_dim_is_an_error():
    mixer = mixerlab.create_token_mixer("mamba3", dim=16, head_dim=8, state_dim=8)
    assert mixer.state_size(1) == mixer.state_size(100_000)
    with pytest.raises(ConfigError, match="state_dim"):
        mixerlab.create_token_mixer("mamba3", dim=16, head_dim=8, state_dim=7)
