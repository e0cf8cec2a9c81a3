"""PGN mixer beyond the registry-wide contract: the fixed history window and its error."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError


def _mixer(**kwargs):
    torch.manual_seed(0)
    return mixerlab.create_token_mixer("pgn", **{"dim": 8, "max_len": 24, **kwargs}).double()


def test_fft_matches_reference_up_to_max_len_with_history():
    mixer = _mixer()
    x = torch.randn(2, 24, 8, dtype=torch.float64)
    y1, s = mixer(x[:, :10])
    y2, s = mixer(x[:, 10:], state=s)
    mixer.mode = "reference"
    y_ref, s_ref = mixer(x)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y_ref, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(s["history"], s_ref["history"])


def test_last_token_reads_the_first_directly():
    # HIE's information path is one step long: the oldest token moves the newest output.
    mixer = _mixer()
    x = torch.randn(1, 24, 8, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 0] += 1.0
    assert not torch.allclose(mixer(x)[0][:, -1], mixer(x2)[0][:, -1])


@pytest.mark.parametrize("mode", ["fft", "reference"])
def test_longer_than_max_len_is_a_clear_error(mode):
    mixer = _mixer()
    mixer.mode = mode
    with pytest.raises(ConfigError, match="max_len=24"):
        mixer(torch.randn(1, 25, 8, dtype=torch.float64))
    _, state = mixer(torch.randn(1, 20, 8, dtype=torch.float64))
    with pytest.raises(ConfigError, match="sequence length=25"):
        mixer(torch.randn(1, 5, 8, dtype=torch.float64), state=state)
    with pytest.raises(ConfigError, match="max_len"):
        mixer.state_size(25)


def test_bad_max_len_is_a_clear_error():
    with pytest.raises(ConfigError, match="max_len=1"):
        mixerlab.create_token_mixer("pgn", dim=8, max_len=1)
