"""FinalMLP gate: 2 sigmoid(.) in (0, 2); a zero gate network passes the features unchanged."""

from __future__ import annotations

import torch

import mixerlab


def test_zero_gate_is_identity_gate():
    m = mixerlab.create_channel_mixer("finalmlp_gate", dim=6, gate_dim=3).double()
    with torch.no_grad():
        m.gate[2].weight.zero_()
        m.gate[2].bias.zero_()
    x = torch.randn(4, 6, dtype=torch.float64)
    torch.testing.assert_close(m(x), m.mlp(x))


def test_gate_range():
    m = mixerlab.create_channel_mixer("finalmlp_gate", dim=6).double()
    g = 2 * torch.sigmoid(m.gate(torch.randn(100, 6, dtype=torch.float64) * 10))
    assert (g > 0).all() and (g < 2).all()
