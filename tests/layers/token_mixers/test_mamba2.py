"""mamba2 specifics beyond the registry-wide contract."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError


def test_state_layout_is_heads_by_head_dim_by_state_dim():
    mixer = mixerlab.create_token_mixer("mamba2", dim=16, expand=2, head_dim=8, state_dim=6, chunk_size=8)
    _, state = mixer(torch.randn(3, 10, 16))
    assert state["ssm"].shape == (3, 4, 8, 6)  # [B, H = 2*16/8, P, N]
    assert state["conv"].shape == (3, 3, 2 * 16 + 2 * 6)


def test_inner_width_not_divisible_by_head_dim_is_a_clear_error():
    with pytest.raises(ConfigError, match="head_dim=12"):
        mixerlab.create_token_mixer("mamba2", dim=16, expand=2, head_dim=12)


@pytest.mark.parametrize("chunk_size", [1, 5, 64])
def test_chunk_sizes_agree_with_reference(chunk_size):
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer(
        "mamba2", dim=16, expand=2, head_dim=8, state_dim=4, chunk_size=chunk_size
    ).double()
    x = torch.randn(2, 19, 16, dtype=torch.float64)
    y, s = mixer(x)
    mixer.mode = "reference"
    y_ref, s_ref = mixer(x)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(s["ssm"], s_ref["ssm"])
