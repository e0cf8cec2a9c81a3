"""HyperLSTM: with the hypernetwork's embeddings fixed to unit scales and no generated bias it is
the plain LSTM it modulates; the generated scales do change the output; the state is fixed-size."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.ops.lstm import lstm_reference


def _make():
    torch.manual_seed(0)
    return mixerlab.create_token_mixer("hyperlstm", dim=8, hidden_dim=6, hyper_dim=4, embed_dim=3).double()


@pytest.mark.parametrize("mode", ["loop", "reference"])
def test_unit_scales_reduce_to_the_plain_lstm(mode):
    mixer = _make()
    mixer.mode = mode
    with torch.no_grad():
        mixer.z_weight.zero_()  # z_h = z_x = 1 (their biases), z_b = 0
        mixer.z_bias.fill_(1.0)
        mixer.d_h.fill_(1 / 3)
        mixer.d_x.fill_(1 / 3)
        mixer.bias.normal_()
    x = torch.randn(2, 11, 8, dtype=torch.float64)
    y, state = mixer(x)
    out, (h, c) = lstm_reference(
        x, mixer.weight_ih, mixer.weight_hh, mixer.bias, torch.zeros_like(mixer.bias)
    )
    torch.testing.assert_close(y, mixer.out_proj(out))
    torch.testing.assert_close(state["h"], h)
    torch.testing.assert_close(state["c"], c)


def test_generated_scales_change_the_output():
    mixer = _make()
    x = torch.randn(2, 11, 8, dtype=torch.float64)
    y, _ = mixer(x)
    with torch.no_grad():
        mixer.z_weight.normal_()
    y2, _ = mixer(x)
    assert not torch.allclose(y, y2)


def test_state_size_is_constant():
    mixer = _make()
    assert mixer.state_size(1) == mixer.state_size(10_000) == 2 * (6 + 4)
