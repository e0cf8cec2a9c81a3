"""LRU specifics beyond the registry-wide contract: ring initialisation, normalisation, state layout."""

from __future__ import annotations

import math

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError


def test_ring_initialisation_stays_inside_the_ring_and_phase_range():
    mixer = mixerlab.create_token_mixer(
        "lru", dim=8, state_dim=512, r_min=0.4, r_max=0.9, max_phase=math.pi / 2
    )
    lam = mixer.diagonal().detach()
    assert lam.abs().min() >= 0.4 - 1e-6 and lam.abs().max() <= 0.9 + 1e-6
    assert lam.angle().min() >= 0 and lam.angle().max() <= math.pi / 2 + 1e-6
    # Uniform in area: the median of |Lambda|^2 sits near the middle of [r_min^2, r_max^2].
    assert abs(lam.abs().square().median().item() - (0.16 + 0.81) / 2) < 0.08


def test_gamma_normalisation_keeps_white_noise_state_variance_at_one():
    """gamma = sqrt(1 - |Lambda|^2) at init, so E|x|^2 = gamma^2 / (1 - |Lambda|^2) = 1 per unit input."""
    mixer = mixerlab.create_token_mixer("lru", dim=4, state_dim=64, r_min=0.5, r_max=0.99)
    lam = mixer.diagonal().detach()
    gamma = mixer.gamma_log.detach().exp()
    torch.testing.assert_close(gamma.square() + lam.abs().square(), torch.ones(64))


def test_state_is_the_complex_recurrence_stored_as_real_and_imaginary_parts():
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer("lru", dim=6, state_dim=5, chunk_size=4).double()
    x = torch.randn(2, 9, 6, dtype=torch.float64)
    y, state = mixer(x)
    assert state["h"].shape == (2, 5, 2)
    h = torch.view_as_complex(state["h"])
    C = torch.complex(mixer.C_re, mixer.C_im)
    torch.testing.assert_close(y[:, -1], (h @ C.T).real + mixer.D * x[:, -1])
    # Walk the recurrence by hand from the equations for the last state.
    B = torch.complex(mixer.B_re, mixer.B_im)
    lam, gamma = mixer.diagonal(), mixer.gamma_log.exp()
    h_hand = torch.zeros(2, 5, dtype=torch.complex128)
    for t in range(9):
        h_hand = lam * h_hand + gamma * (x[:, t].to(torch.complex128) @ B.T)
    torch.testing.assert_close(h, h_hand)


@pytest.mark.parametrize(("field", "value"), [("r_min", 1.0), ("r_max", 0.0), ("max_phase", 0.0)])
def test_bad_ring_is_a_clear_error(field, value):
    with pytest.raises(ConfigError, match=field):
        mixerlab.create_token_mixer("lru", dim=8, **{field: value})
