"""idw_attention: weights are inverse distances, normalised; a query on a key returns its value."""

from __future__ import annotations

import torch

import mixerlab
from mixerlab.ops.idw_attention import idw_attention_parallel, idw_attention_reference


def test_weights_are_normalised_inverse_distances():
    g = torch.Generator().manual_seed(0)
    q, k = (
        torch.randn(1, 1, 1, 3, generator=g, dtype=torch.float64),
        torch.randn(1, 5, 1, 3, generator=g, dtype=torch.float64),
    )
    v = torch.eye(5, dtype=torch.float64)[None, :, None, :]  # value s = one-hot s: the output is the weights
    for power in (1.0, 2.0):
        inverse = (q[0, 0, 0] - k[0, :, 0]).norm(dim=-1) ** -power
        expected = inverse / inverse.sum()
        for fn in (idw_attention_reference, idw_attention_parallel):
            got = fn(q, k, v, power=power, eps=1e-30)[0, 0, 0]
            torch.testing.assert_close(got, expected)


def test_a_query_on_a_key_returns_that_keys_value():
    g = torch.Generator().manual_seed(1)
    k = torch.randn(1, 6, 1, 4, generator=g, dtype=torch.float64)
    v = torch.randn(1, 6, 1, 2, generator=g, dtype=torch.float64)
    q = k[:, 2:3] + 1e-9  # the last query sits on key 2 (of the 6 it sees)
    o = idw_attention_parallel(q, k, v, power=1.0, eps=1e-24)
    torch.testing.assert_close(o[0, 0, 0], v[0, 2, 0], rtol=1e-5, atol=1e-6)


def test_larger_power_concentrates_on_the_nearest_key():
    torch.manual_seed(0)
    x = torch.randn(1, 9, 16)
    soft = mixerlab.create_token_mixer("idw_attention", dim=16, num_heads=2, power=1.0)
    sharp = mixerlab.create_token_mixer("idw_attention", dim=16, num_heads=2, power=8.0)
    sharp.load_state_dict(soft.state_dict())
    q, k, _ = soft._project(x)
    v = torch.eye(9)[None, :, None, :].expand(1, 9, 2, 9)
    k = k[:, :, :1].expand(1, 9, 2, -1).contiguous()
    w_soft = idw_attention_parallel(q, k, v, power=1.0)
    w_sharp = idw_attention_parallel(q, k, v, power=8.0)
    assert (w_sharp.amax(-1) >= w_soft.amax(-1) - 1e-6).all()
    assert w_sharp[:, 4:].amax(-1).mean() > w_soft[:, 4:].amax(-1).mean() + 0.1
