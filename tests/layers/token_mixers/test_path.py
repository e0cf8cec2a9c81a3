"""path specifics beyond the registry-wide contract."""

from __future__ import annotations

import torch

import mixerlab


def make(**kwargs):
    torch.manual_seed(0)
    return mixerlab.create_token_mixer("path", dim=16, num_heads=2, chunk_size=5, **kwargs).double()


def test_cached_keys_pass_through_every_later_transform():
    mixer = make(conv_size=None)
    with torch.no_grad():  # beta = 2 sigmoid(0) = 1: every H_t projects out w_t
        mixer.b_proj.weight.zero_()
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    _, state = mixer(x)
    k_raw = mixer.qkvw_proj(x).chunk(4, dim=-1)[1].reshape(2, 12, 2, 8)
    assert not torch.allclose(state["k"][:, :-1], k_raw[:, :-1])  # earlier keys were transformed
    torch.testing.assert_close(state["k"][:, -1], k_raw[:, -1])  # the newest key is as written
    # beta = 1 projects out w_t: the key cached before step t is orthogonal to w_t afterwards
    w = mixer.qkvw_proj(x).chunk(4, dim=-1)[3].reshape(2, 12, 2, 8)
    w = torch.nn.functional.normalize(torch.nn.functional.silu(w), dim=-1)
    torch.testing.assert_close((state["k"][:, -2] * w[:, -1]).sum(-1), torch.zeros(2, 2, dtype=torch.float64))


def test_state_grows_with_the_sequence():
    mixer = make()
    _, state = mixer(torch.randn(1, 20, 16, dtype=torch.float64))
    assert state["k"].shape == (1, 20, 2, 8) and state["v"].shape == (1, 20, 2, 8)
    assert mixer.state_size(20) - mixer.state_size(10) == 2 * 10 * 16
