"""deltanet / gated_deltanet specifics beyond the registry-wide contract."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.layers.token_mixers.base import state_numel

NAMES = ["deltanet", "gated_deltanet"]


def make(name: str, **kwargs):
    torch.manual_seed(0)
    return mixerlab.create_token_mixer(name, dim=16, num_heads=2, chunk_size=8, **kwargs).double()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("negative", [False, True])
def test_beta_range_follows_allow_negative_eigenvalues(name, negative):
    mixer = make(name, allow_negative_eigenvalues=negative)
    with torch.no_grad():
        mixer.b_proj.weight.mul_(50.0)  # push sigmoid to saturation on both sides
    x = torch.randn(2, 40, 16, dtype=torch.float64)
    *_, beta, _ = mixer._qkvb(x, None)
    upper = 2.0 if negative else 1.0
    assert beta.min() >= 0 and beta.max() <= upper
    assert beta.max() > 0.9 * upper  # the upper end is reached, so beta > 1 really happens when allowed


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("chunk_size", [3, 8, 64])
def test_without_short_conv_chunk_matches_reference(name, chunk_size):
    mixer = make(name, conv_size=None, allow_negative_eigenvalues=True)
    mixer.chunk_size = chunk_size
    x = torch.randn(2, 21, 16, dtype=torch.float64)
    y, s = mixer(x)
    mixer.mode = "reference"
    y_ref, s_ref = mixer(x)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(s["recurrent"], s_ref["recurrent"])
    assert set(s) == {"recurrent"}
    assert state_numel(s) == 2 * mixer.state_size(21)


@pytest.mark.parametrize("name", NAMES)
def test_bad_conv_size_is_a_clear_error(name):
    with pytest.raises(ConfigError, match="conv_size=1"):
        mixerlab.create_token_mixer(name, dim=16, num_heads=2, conv_size=1)


def test_gated_decay_is_in_unit_interval_and_value_width_follows_expand():
    mixer = make("gated_deltanet", expand=3)
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    g = mixer._decay(x)
    assert (g <= 0).all()
    _, state = mixer(x)
    assert state["recurrent"].shape == (2, 2, 8, 24)
