"""ParaGRU (``pararnn``) beyond the registry-wide contract: Newton options and float32 accuracy."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError


def _mixer(**kwargs):
    torch.manual_seed(0)
    return mixerlab.create_token_mixer("pararnn", **{"dim": 16, "num_heads": 2, **kwargs})


def test_float32_newton_matches_sequential_and_converges_fast():
    mixer = _mixer()
    x = torch.randn(2, 300, 16)
    y, s = mixer(x)
    assert 1 <= mixer.last_newton_iters <= 12
    mixer.mode = "reference"
    y_ref, s_ref = mixer(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(s["h"], s_ref["h"], rtol=1e-4, atol=1e-5)


def test_max_iters_is_honoured():
    mixer = _mixer(max_iters=1).double()
    x = torch.randn(2, 40, 16, dtype=torch.float64)
    y1, _ = mixer(x)
    assert mixer.last_newton_iters == 1
    mixer.mode = "reference"
    assert not torch.allclose(y1, mixer(x)[0], rtol=1e-7, atol=1e-9)


def test_hidden_dim_differs_from_dim():
    mixer = _mixer(hidden_dim=8).double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    y, s = mixer(x)
    assert s["h"].shape == (2, 8) and mixer.state_size(9) == 8
    mixer.mode = "reference"
    torch.testing.assert_close(y, mixer(x)[0], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"hidden_dim": 7}, "hidden_dim=7"), ({"tol": 0.0}, "tol=0.0"), ({"max_iters": 0}, "max_iters=0")],
)
def test_bad_options_are_clear_errors(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        _mixer(**kwargs)
