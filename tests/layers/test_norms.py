"""EvoNorm-S0 against its equation; the registry-wide checks run on it once it is imported."""

from __future__ import annotations

import pytest
import torch

import mixerlab


def test_evonorm_s0_matches_definition():
    norm = mixerlab.create_norm("evonorm", dim=6, num_groups=3).double()
    with torch.no_grad():
        norm.v.uniform_(0.5, 1.5)
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(4, 6, dtype=torch.float64)
    expected = torch.empty_like(x)
    for g in range(3):
        cols = slice(2 * g, 2 * g + 2)
        var = x[:, cols].var(-1, unbiased=False, keepdim=True)
        expected[:, cols] = x[:, cols] * torch.sigmoid(norm.v[cols] * x[:, cols]) / torch.sqrt(var + norm.eps)
    expected = expected * norm.weight + norm.bias
    torch.testing.assert_close(norm(x), expected)


def test_evonorm_is_scale_invariant_up_to_the_swish():
    # With v -> 0, sigmoid(v x) = 1/2 and EvoNorm-S0 is a scale-invariant group normaliser.
    norm = mixerlab.create_norm("evonorm", dim=8, num_groups=2).double()
    with torch.no_grad():
        norm.v.zero_()
    x = torch.randn(3, 8, dtype=torch.float64)
    torch.testing.assert_close(norm(5 * x), norm(x), atol=1e-4, rtol=1e-4)


def test_evonorm_groups_must_divide_dim():
    with pytest.raises(mixerlab.ConfigError, match="dim=10"):
        mixerlab.create_norm("evonorm", dim=10, num_groups=4)
