"""GR-KAN: starts as the GELU MLP it replaces, preserves variance, validates its groups."""

from __future__ import annotations

import pytest
import torch

import mixerlab


def test_grkan_starts_as_the_gelu_mlp_it_replaces():
    m = mixerlab.create_channel_mixer("grkan", dim=16, expand=4, num_groups=4).double()
    x = torch.randn(7, 16, dtype=torch.float64).clamp(-2.5, 2.5)
    h = m.fc1(x)  # first rational is exactly the identity
    h = h.clamp(-3, 3)
    expected = m.fc2(torch.nn.functional.gelu(h))
    got = m.fc2(m.rational2(h))
    torch.testing.assert_close(got, expected, atol=0.05, rtol=0.0)
    torch.testing.assert_close(m.rational1(x), x)


def test_grkan_variance_preserving_init():
    torch.manual_seed(0)
    m = mixerlab.create_channel_mixer("grkan", dim=256, expand=4, num_groups=8)
    with torch.no_grad():
        y = m(torch.randn(512, 256))
    assert y.var().item() == pytest.approx(1.0, rel=0.3)


def test_grkan_rejects_groups_not_dividing_dim():
    with pytest.raises(mixerlab.ConfigError, match="dim=10"):
        mixerlab.create_channel_mixer("grkan", dim=10, num_groups=4)
