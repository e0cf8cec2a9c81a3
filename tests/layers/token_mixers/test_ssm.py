"""Mamba layer: authors' defaults, the negative-eigenvalue option, and option validation."""

from __future__ import annotations

import math

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError


def _mixer(**kwargs):
    torch.manual_seed(0)
    base = {"dim": 16, "state_dim": 4, "chunk_size": 8}
    return mixerlab.create_token_mixer("mamba", **{**base, **kwargs}).double()


def test_authors_defaults():
    m = mixerlab.create_token_mixer("mamba", dim=64)
    assert m.inner_dim == 128 and m.state_dim == 16 and m.conv_size == 4
    assert m.dt_rank == math.ceil(64 / 16)
    torch.testing.assert_close(-torch.exp(m.A_log[0]), -torch.arange(1.0, 17.0))  # S4D-real
    dt = torch.nn.functional.softplus(m.dt_proj.bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6


def test_negative_eigenvalues_scan_matches_reference_and_state_splits():
    m = _mixer(allow_negative_eigenvalues=True)
    with torch.no_grad():
        m.dt_proj.bias.fill_(1.0)  # dt ~ 1.3 so that 2 exp(dt A) - 1 < 0 for most states
    x = torch.randn(2, 29, 16, dtype=torch.float64, requires_grad=True)
    y, s = m(x)
    m.mode = "reference"
    y_ref, s_ref = m(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(s["ssm"], s_ref["ssm"], rtol=1e-7, atol=1e-9)
    g = torch.randn_like(y)
    torch.testing.assert_close(
        torch.autograd.grad(y, x, g)[0], torch.autograd.grad(y_ref, x, g)[0], rtol=1e-7, atol=1e-9
    )
    m.mode = "scan"
    y1, s1 = m(x[:, :10])
    y2, _ = m(x[:, 10:], state=s1)
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y)


def test_negative_eigenvalues_change_the_output():
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    y_pos, _ = _mixer()(x)
    y_neg, _ = _mixer(allow_negative_eigenvalues=True)(x)
    assert not torch.allclose(y_pos, y_neg)


def test_float32_scan_close_to_reference():
    m = _mixer().float()
    x = torch.randn(2, 40, 16)
    y, _ = m(x)
    m.mode = "reference"
    y_ref, _ = m(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("field", "value"),
    [("expand", 0), ("state_dim", -1), ("conv_size", 0), ("chunk_size", 2.5), ("dt_rank", 0)],
)
def test_bad_options_name_the_field(field, value):
    with pytest.raises(ConfigError, match=f"{field}="):
        mixerlab.create_token_mixer("mamba", dim=16, **{field: value})
