"""HGRN specifics: the lower-bounded forget gate, the tied input gate, the rotation phase."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError


@pytest.mark.parametrize("lower_bound", [0.0, 0.6, 0.95])
def test_forget_gate_is_bounded_below_and_ties_the_input_gate(lower_bound):
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer("hgrn", dim=8, lower_bound=lower_bound).double()
    x = 5 * torch.randn(3, 17, 8, dtype=torch.float64)  # large inputs push the gates to both ends
    a, b = mixer.recurrence(x)
    lam = a.abs()
    assert lam.min() >= lower_bound and lam.max() < 1
    torch.testing.assert_close(
        a.angle(), torch.remainder(mixer.theta + torch.pi, 2 * torch.pi).expand_as(lam) - torch.pi
    )
    c = torch.nn.functional.silu(mixer.input_proj(x)).unflatten(-1, (8, 2))  # (re, im) interleaved
    torch.testing.assert_close(b, torch.complex(c[..., 0], c[..., 1]) * (1 - lam))


def test_higher_lower_bound_keeps_more_memory():
    """With no new input the state only decays through the forget gate, never below lower_bound^T."""
    T, kept = 30, {}
    for lb in (0.0, 0.9):
        torch.manual_seed(0)
        mixer = mixerlab.create_token_mixer("hgrn", dim=8, lower_bound=lb).double()
        with torch.no_grad():  # SiLU(-30) ~ 0: the candidate c_t vanishes, leaving the decay alone
            mixer.input_proj.bias.fill_(-30.0)
        h0 = {"h": torch.ones(1, 8, 2, dtype=torch.float64)}
        _, state = mixer(torch.zeros(1, T, 8, dtype=torch.float64), state=h0)
        kept[lb] = (state["h"].norm() / h0["h"].norm()).item()
    assert kept[0.9] >= 0.9**T * (1 - 1e-6)
    assert kept[0.9] > 1000 * kept[0.0]


def test_lower_bound_outside_unit_interval_is_a_clear_error():
    with pytest.raises(ConfigError, match="lower_bound=1.0"):
        mixerlab.create_token_mixer("hgrn", dim=8, lower_bound=1.0)
