"""HGRN2 specifics: the lower-bounded forget gate, its tied key ``1 - f``, the expanded state."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.ops.linear_attention import linear_attention_reference


@pytest.mark.parametrize("lower_bound", [0.0, 0.6])
def test_forget_gate_is_bounded_below_and_ties_the_key(lower_bound):
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer("hgrn2", dim=8, num_heads=2, state_dim=3, lower_bound=lower_bound)
    x = 5 * torch.randn(2, 11, 8, dtype=torch.float64)  # large inputs push the gates to both ends
    _, k, log_f = mixer.double().gates(x)
    f = log_f.exp()
    assert f.min() >= lower_bound and f.max() <= 1
    torch.testing.assert_close(k, 1 - f)


def test_layer_is_the_outer_product_recurrence_written_out():
    """One head's state is ``sum_s (prod decays) (1 - f_s)^T i_s``: checked against the GLA loop
    fed with keys computed from the forget gate, not with the layer's own keys."""
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer("hgrn2", dim=8, num_heads=2, state_dim=3, lower_bound=0.3).double()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    _, state = mixer(x)
    q, _, log_f = mixer.gates(x)
    v = mixer.i_proj(x).unflatten(-1, (2, 4))
    _, S = linear_attention_reference(q, 1 - log_f.exp(), v, log_f)
    torch.testing.assert_close(state["S"], S)


def test_higher_lower_bound_keeps_more_memory():
    kept = {}
    for lb in (0.0, 0.9):
        torch.manual_seed(0)
        mixer = mixerlab.create_token_mixer("hgrn2", dim=8, num_heads=2, state_dim=3, lower_bound=lb).double()
        s0 = {"S": torch.ones(1, 2, 3, 4, dtype=torch.float64)}
        # zero input: no value enters (i_proj has no bias), the state only decays
        _, state = mixer(torch.zeros(1, 30, 8, dtype=torch.float64), state=s0)
        kept[lb] = (state["S"].norm() / s0["S"].norm()).item()
    assert kept[0.9] >= 0.9**30 * (1 - 1e-9)
    assert kept[0.9] > 1000 * kept[0.0]


def test_state_grows_with_state_dim_not_with_length():
    small = mixerlab.create_token_mixer("hgrn2", dim=8, num_heads=2, state_dim=2)
    big = mixerlab.create_token_mixer("hgrn2", dim=8, num_heads=2, state_dim=6)
    assert big.state_size(5) == 3 * small.state_size(5) == 3 * small.state_size(500)


def test_lower_bound_outside_unit_interval_is_a_clear_error():
    with pytest.raises(ConfigError, match="lower_bound=1.0"):
        mixerlab.create_token_mixer("hgrn2", dim=8, lower_bound=1.0)
