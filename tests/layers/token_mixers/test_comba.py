"""comba specifics beyond the registry-wide contract."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError


def make(**kwargs):
    torch.manual_seed(0)
    return mixerlab.create_token_mixer("comba", dim=16, num_heads=2, chunk_size=5, **kwargs).double()


def test_output_correction_changes_the_read_out_not_the_state():
    x = torch.randn(2, 13, 16, dtype=torch.float64)
    y1, s1 = make(correction_factor=1.0)(x)
    y0, s0 = make(correction_factor=0.0)(x)
    torch.testing.assert_close(s1["recurrent"], s0["recurrent"])
    assert not torch.allclose(y1, y0)


def test_read_key_is_shrunk_write_key():
    mixer = make()
    q, k, v, p, beta, g, _ = mixer._inputs(torch.randn(2, 7, 16, dtype=torch.float64), None)
    ratio = (p * k).sum(-1)  # p = sigmoid(c) k with unit k: p . k = sigmoid(c) in (0, 1)
    torch.testing.assert_close(ratio, torch.sigmoid(mixer.inner_decay).expand_as(ratio))
    assert (g <= 0).all() and beta.min() >= 0 and beta.max() <= 1


def test_bad_correction_factor_is_a_clear_error():
    with pytest.raises(ConfigError, match="correction_factor"):
        mixerlab.create_token_mixer("comba", dim=16, num_heads=2, correction_factor=float("nan"))
