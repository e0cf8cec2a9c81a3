"""MesaNet specifics (arXiv:2506.05233): options, the fixed state, and the layer's variants
against the per-step reference."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError


def _mesanet(**options):
    torch.manual_seed(0)
    return mixerlab.create_token_mixer(
        "mesanet", **{"dim": 16, "num_heads": 2, "chunk_size": 8, **options}
    ).double()


@pytest.mark.parametrize("options", [{"conv_size": None}, {"output_gate": True, "conv_size": 2}])
def test_variants_match_the_reference(options):
    mixer = _mesanet(**options)
    x = torch.randn(2, 21, 16, dtype=torch.float64)
    y, state = mixer(x)
    mixer.mode = "reference"
    y_ref, state_ref = mixer(x)
    torch.testing.assert_close(y, y_ref)
    assert state.keys() == state_ref.keys()
    for key in state:
        torch.testing.assert_close(state[key], state_ref[key])


def test_state_is_two_statistics_of_fixed_size():
    mixer = _mesanet(conv_size=None)
    assert mixer.state_size(1) == mixer.state_size(10_000) == 2 * 8 * (8 + 8)
    _, state = mixer(torch.randn(1, 40, 16, dtype=torch.float64))
    assert set(state) == {"kk", "kv"}
    # H^kk is a (decayed) sum of k k^T: symmetric and positive semi-definite
    torch.testing.assert_close(state["kk"], state["kk"].transpose(-1, -2))
    assert torch.linalg.eigvalsh(state["kk"]).min() > -1e-12


def test_regulariser_starts_at_lambda_init_and_stays_above_lambda_min():
    mixer = _mesanet(lambda_init=2.0, lambda_min=0.5)
    torch.testing.assert_close(mixer.regulariser(), torch.full((2, 8), 2.0, dtype=torch.float64))
    with torch.no_grad():
        mixer.lambda_params.fill_(-50.0)
    assert mixer.regulariser().min() >= 0.5


@pytest.mark.parametrize(
    ("field", "value"), [("conv_size", 1), ("lambda_init", 0.2), ("lambda_min", -1.0), ("output_gate", 1)]
)
def test_bad_options_are_clear_errors(field, value):
    with pytest.raises(ConfigError, match=field):
        _mesanet(**{field: value})
