"""lowrank_attention: rank-limited projections; at full rank it holds any dense attention."""

from __future__ import annotations

import torch

import mixerlab


def _copy_dense_into_factors(dense: torch.nn.Linear, factors: torch.nn.Sequential) -> None:
    # W = U V with V = I (rank = in_features) and U = W
    with torch.no_grad():
        factors[0].weight.copy_(torch.eye(factors[0].weight.shape[0], factors[0].weight.shape[1]))
        factors[1].weight.copy_(dense.weight)


def test_full_rank_factorisation_equals_attention():
    torch.manual_seed(0)
    dense = mixerlab.create_token_mixer("attention", dim=16, num_heads=4, num_kv_heads=2).double()
    low = mixerlab.create_token_mixer(
        "lowrank_attention", dim=16, num_heads=4, num_kv_heads=2, rank=16
    ).double()
    for name in ("q_proj", "kv_proj", "o_proj"):
        _copy_dense_into_factors(getattr(dense, name), getattr(low, name))
    x = torch.randn(2, 13, 16, dtype=torch.float64)
    y_dense, s_dense = dense(x)
    y_low, s_low = low(x)
    torch.testing.assert_close(y_low, y_dense)
    torch.testing.assert_close(s_low["k"], s_dense["k"])


def test_projections_have_at_most_the_rank_and_fewer_parameters():
    low = mixerlab.create_token_mixer("lowrank_attention", dim=32, num_heads=4, rank=3)
    dense = mixerlab.create_token_mixer("attention", dim=32, num_heads=4)
    for name in ("q_proj", "kv_proj", "o_proj"):
        f = getattr(low, name)
        weight = f[1].weight @ f[0].weight  # [out, in]
        assert torch.linalg.matrix_rank(weight) <= 3
    assert sum(p.numel() for p in low.parameters()) < sum(p.numel() for p in dense.parameters()) / 2
