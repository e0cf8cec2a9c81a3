"""SCRN: the context units are an exponential moving average of ``B x`` with the fixed ``alpha``,
and ``alpha = 0`` makes them memoryless; bad options are clear errors."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError


def _make(**kw):
    torch.manual_seed(0)
    return mixerlab.create_token_mixer("scrn", dim=8, hidden_dim=6, state_dim=4, chunk_size=8, **kw).double()


@pytest.mark.parametrize("mode", ["scan", "reference"])
def test_context_units_are_an_exponential_moving_average(mode):
    mixer = _make(alpha=0.8)
    mixer.mode = mode
    x = torch.randn(2, 21, 8, dtype=torch.float64)
    _, state = mixer(x)
    bx = mixer.B(x)
    weights = 0.2 * 0.8 ** torch.arange(20, -1, -1, dtype=torch.float64)  # (1 - alpha) alpha^(T-1-t)
    torch.testing.assert_close(state["s"], torch.einsum("t,bts->bs", weights, bx))


def test_alpha_zero_forgets_the_context():
    mixer = _make(alpha=0.0)
    x = torch.randn(1, 9, 8, dtype=torch.float64)
    _, state = mixer(x)
    torch.testing.assert_close(state["s"], mixer.B(x[:, -1]))


def test_state_does_not_grow():
    mixer = _make()
    assert mixer.state_size(10) == mixer.state_size(10_000) == 4 + 6


@pytest.mark.parametrize("alpha", [1.0, -0.1])
def test_alpha_outside_unit_interval_is_an_error(alpha):
    with pytest.raises(ConfigError, match="alpha"):
        mixerlab.create_token_mixer("scrn", dim=8, alpha=alpha)
