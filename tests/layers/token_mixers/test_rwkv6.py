"""RWKV-6 specifics: the data-dependent token shift, decays in (0, 1), the carried last token."""

from __future__ import annotations

import torch

import mixerlab


def _mixer():
    torch.manual_seed(0)
    return mixerlab.create_token_mixer("rwkv6", dim=8, num_heads=2, shift_rank=3, decay_rank=3).double()


def test_token_shift_interpolates_between_current_and_previous_token():
    mixer = _mixer()
    x, x_prev = torch.randn(2, 2, 5, 8, dtype=torch.float64)
    with torch.no_grad():
        mixer.shift_up.zero_()  # the LoRA's data-dependent part off: lerp with lambda_s alone
        mixer.shift_base[0].fill_(1.0)
        mixer.shift_base[1].fill_(0.0)
        mixer.shift_base[2].fill_(0.25)
    xs = mixer.shifted(x, x_prev)
    torch.testing.assert_close(xs[0], x_prev)
    torch.testing.assert_close(xs[1], x)
    torch.testing.assert_close(xs[2], 0.75 * x + 0.25 * x_prev)
    with torch.no_grad():
        mixer.shift_up.normal_()
    assert not torch.allclose(mixer.shifted(x, x_prev)[2], 0.75 * x + 0.25 * x_prev)  # data-dependent


def test_state_carries_the_last_token_for_the_next_shift():
    mixer = _mixer()
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    _, state = mixer(x)
    torch.testing.assert_close(state["x"], x[:, -1])
    # a different previous token changes the first output of the next call
    y1, _ = mixer(x[:, :1], state=state)
    y2, _ = mixer(x[:, :1], state={**state, "x": state["x"] + 1.0})
    assert not torch.allclose(y1, y2)


def test_bonus_weights_the_current_token():
    """From an empty state the first output reads only ``diag(u) k_0^T v_0``: with ``u = 0`` the
    first output is the (norm's bias through the) output stage of a zero read-out."""
    mixer = _mixer()
    x = torch.randn(2, 1, 8, dtype=torch.float64)
    with torch.no_grad():
        mixer.bonus.zero_()
        mixer.norm_bias.zero_()
    y, _ = mixer(x)
    torch.testing.assert_close(y, torch.zeros_like(y))
    with torch.no_grad():
        mixer.bonus.fill_(1.0)
    assert mixer(x)[0].abs().max() > 1e-3
