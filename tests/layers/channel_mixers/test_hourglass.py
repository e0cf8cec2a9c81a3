"""Hourglass MLP: the lift is a fixed random buffer, the skip stream is wide."""

from __future__ import annotations

import torch

import mixerlab


def test_lift_is_frozen_and_equation_holds():
    m = mixerlab.create_channel_mixer("hourglass_mlp", dim=4, wide_expand=3, hidden_dim=2, depth=2).double()
    assert "lift" not in dict(m.named_parameters()) and m.lift.shape == (4, 12)
    x = torch.randn(5, 4, dtype=torch.float64)
    z = x @ m.lift
    for norm, down, up in zip(m.norms, m.down, m.up):
        z = z + up(torch.nn.functional.gelu(down(norm(z))))
    torch.testing.assert_close(m(x), m.out(z))
    assert m.down[0].out_features == 2 and m.up[0].out_features == 12


def test_trainable_lift_option():
    m = mixerlab.create_channel_mixer("hourglass_mlp", dim=4, train_lift=True)
    assert "lift" in dict(m.named_parameters())
