"""Block-diagonal LRNN specifics: column normalisation of the input-dependent blocks."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError


def test_blocks_have_centred_columns_with_p_norm_at_most_one():
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer("block_diag_lrnn", dim=12, block_size=4, p_norm=1.5).double()
    A = mixer.transitions(torch.randn(2, 9, 12, dtype=torch.float64))  # [B, T, G, K, K]
    assert A.shape == (2, 9, 3, 4, 4)
    torch.testing.assert_close(A.mean(dim=-2), torch.zeros(2, 9, 3, 4, dtype=torch.float64))
    col = torch.linalg.vector_norm(A, ord=1.5, dim=-2)  # [B, T, G, K]
    assert col.max() <= 1 + 1e-12
    torch.testing.assert_close(col.amax(dim=-1), torch.ones(2, 9, 3, dtype=torch.float64))


def test_output_is_the_block_recurrence_from_the_learned_initial_state():
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer("block_diag_lrnn", dim=8, block_size=4, chunk_size=3).double()
    x = torch.randn(1, 7, 8, dtype=torch.float64)
    y, _ = mixer(x)
    A = mixer.transitions(x)
    v = mixer.value_mlp(x).reshape(1, 7, 2, 4)
    h = mixer.h_init[None]
    for t in range(7):
        h = torch.einsum("bgij,bgj->bgi", A[:, t], h) + v[:, t]
        torch.testing.assert_close(y[:, t], h.reshape(1, 8))


def test_block_size_must_divide_dim():
    with pytest.raises(ConfigError, match="dim=30"):
        mixerlab.create_token_mixer("block_diag_lrnn", dim=30, block_size=8)
