"""Hyena and H3: behaviour beyond the registry-wide contract."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError


def _x(T, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, T, dim, generator=g, dtype=torch.float64)


def test_hyena_beyond_max_len_is_a_clear_error_also_across_calls():
    mixer = mixerlab.create_token_mixer("hyena", dim=16, filter_emb_dim=5, max_len=10).double()
    mixer(_x(10))
    _, state = mixer(_x(6))
    with pytest.raises(ConfigError, match="max_len=10"):
        mixer(_x(5), state=state)


def test_hyena_filter_depends_on_position_only():
    mixer = mixerlab.create_token_mixer("hyena", dim=16, filter_emb_dim=5, max_len=64).double()
    short = mixer.filter(10, torch.device("cpu"), torch.float64)
    long = mixer.filter(40, torch.device("cpu"), torch.float64)
    torch.testing.assert_close(long[:10], short)
    # the exponential window makes late taps smaller than early ones on average
    assert long[30:].abs().mean() < long[:10].abs().mean()


@pytest.mark.parametrize("order", [1, 3])
def test_hyena_other_orders_match_reference(order):
    mixer = mixerlab.create_token_mixer("hyena", dim=8, order=order, filter_emb_dim=3, max_len=32).double()
    x = _x(13, dim=8)
    y_fast, s_fast = mixer(x)
    mixer.mode = "reference"
    y_ref, s_ref = mixer(x)
    torch.testing.assert_close(y_fast, y_ref)
    assert s_fast["history"].shape == (2, 13, order, 8)


def test_hyena_bad_options_name_the_field():
    with pytest.raises(ConfigError, match="filter_emb_dim=4"):
        mixerlab.create_token_mixer("hyena", dim=8, filter_emb_dim=4)
    with pytest.raises(ConfigError, match="order=0"):
        mixerlab.create_token_mixer("hyena", dim=8, order=0)


def test_h3_default_heads_are_size_one_and_state_is_fixed():
    mixer = mixerlab.create_token_mixer("h3", dim=8, state_dim=4, conv_size=3).double()
    assert mixer.num_heads == 8 and mixer.head_dim == 1
    _, s1 = mixer(_x(5, dim=8))
    _, s2 = mixer(_x(40, dim=8))
    assert {k: v.shape for k, v in s1.items()} == {k: v.shape for k, v in s2.items()}


def test_h3_long_decoding_matches_one_call():
    mixer = mixerlab.create_token_mixer("h3", dim=8, num_heads=2, state_dim=4, conv_size=3).double()
    x = _x(30, dim=8)
    y_full, _ = mixer(x)
    y, state = mixer(x[:, :20])
    ys = [y]
    for t in range(20, 30):
        y, state = mixer(x[:, t : t + 1], state=state)
        ys.append(y)
    torch.testing.assert_close(torch.cat(ys, 1), y_full)


def test_h3_odd_state_dim_is_a_clear_error():
    with pytest.raises(ConfigError, match="state_dim=3"):
        mixerlab.create_token_mixer("h3", dim=8, state_dim=3)
