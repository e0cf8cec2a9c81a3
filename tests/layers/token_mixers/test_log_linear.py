"""Log-linear Mamba-2 specifics: unit level weights give Mamba-2, the state grows as log2 T."""

from __future__ import annotations

import math

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError

SIZES = {"dim": 8, "expand": 2, "head_dim": 4, "state_dim": 3}


def test_unit_level_weights_are_mamba2():
    torch.manual_seed(0)
    ll = mixerlab.create_token_mixer("log_linear", **SIZES, num_levels=8).double()
    m2 = mixerlab.create_token_mixer("mamba2", **SIZES).double()
    m2.load_state_dict({k: v for k, v in ll.state_dict().items() if not k.startswith("level_proj")})
    with torch.no_grad():
        ll.level_proj.weight.zero_()  # the bias is softplus^-1(1): lambda = 1 at every level
    x = torch.randn(2, 21, 8, dtype=torch.float64)
    torch.testing.assert_close(ll(x)[0], m2(x)[0])
    with torch.no_grad():
        ll.level_proj.weight.normal_()  # data-dependent level weights: no longer Mamba-2
    assert not torch.allclose(ll(x)[0], m2(x)[0])


def test_state_grows_logarithmically():
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer("log_linear", **SIZES, num_levels=10).double()
    per_level = 4 * 4 * 3  # heads x head_dim x state_dim
    for T in (1, 2, 3, 5, 9, 17, 33, 65):
        _, state = mixer(torch.randn(1, T, 8, dtype=torch.float64))
        expected = 1 if T == 1 else math.floor(math.log2(T - 1)) + 2  # levels 0 .. floor(log2(T-1)) + 1
        assert state["levels"].shape[1] == expected
        assert mixer.state_size(T) - mixer.state_size(1) == per_level * (state["levels"].shape[1] - 1)
    assert mixer.state_size(2**9) - mixer.state_size(2**8) == per_level  # one more level per doubling


def test_positions_beyond_the_levels_are_a_clear_error():
    mixer = mixerlab.create_token_mixer("log_linear", **SIZES, num_levels=3)
    mixer(torch.randn(1, 4, 8))  # positions 0..3 need levels 0..2
    with pytest.raises(ConfigError, match="num_levels=3"):
        mixer(torch.randn(1, 5, 8))
