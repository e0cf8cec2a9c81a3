"""gated_deltaproduct specifics beyond the registry-wide contract."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError


def make(name: str, **kwargs):
    torch.manual_seed(0)
    return mixerlab.create_token_mixer(name, dim=16, num_heads=2, chunk_size=5, **kwargs).double()


@pytest.mark.parametrize("negative", [False, True])
def test_one_householder_step_equals_gated_deltanet_with_copied_weights(negative):
    gdn = make("gated_deltanet", allow_negative_eigenvalues=negative)
    product = make("gated_deltaproduct", num_householder=1, allow_negative_eigenvalues=negative)
    product.load_state_dict(gdn.state_dict())  # same parameter names and shapes at n_h = 1
    x = torch.randn(2, 23, 16, dtype=torch.float64)
    y, s = product(x)
    y_gdn, s_gdn = gdn(x)
    torch.testing.assert_close(y, y_gdn)
    for key in s_gdn:
        torch.testing.assert_close(s[key], s_gdn[key])


def test_more_householder_steps_change_the_state_but_not_its_size():
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    states = {n: make("gated_deltaproduct", num_householder=n)(x)[1]["recurrent"] for n in (1, 3)}
    assert states[1].shape == states[3].shape
    assert not torch.allclose(states[1], states[3])


def test_beta_reaches_two_when_negative_eigenvalues_are_allowed():
    mixer = make("gated_deltaproduct", num_householder=2)
    with torch.no_grad():
        mixer.b_proj.weight.mul_(50.0)
    *_, beta, _, _ = mixer._inputs(torch.randn(2, 30, 16, dtype=torch.float64), None)
    assert beta.shape == (2, 30, 2, 2)
    assert beta.min() >= 0 and beta.max() <= 2 and beta.max() > 1.8


def test_bad_num_householder_is_a_clear_error():
    with pytest.raises(ConfigError, match="num_householder=0"):
        mixerlab.create_token_mixer("gated_deltaproduct", dim=16, num_heads=2, num_householder=0)
