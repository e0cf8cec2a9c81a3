"""mla: the cache is the latent plus one shared rotary key per token, smaller than attention's."""

from __future__ import annotations

import torch

import mixerlab
from mixerlab.layers.token_mixers.base import state_numel


def test_state_is_the_compressed_cache_and_smaller_than_attentions():
    mla = mixerlab.create_token_mixer("mla", dim=64, num_heads=4)  # K = 16, C = 4 K, R = K / 2
    attention = mixerlab.create_token_mixer("attention", dim=64, num_heads=4)
    _, state = mla(torch.randn(3, 10, 64))
    assert state["latent"].shape == (3, 10, 64) and state["k_rope"].shape == (3, 10, 8)
    for T in (1, 10, 1000):
        assert mla.state_size(T) == T * (mla.latent_dim + mla.rope_dim)
        assert mla.state_size(T) * 16 == attention.state_size(T) * 9  # 72 vs 128 scalars per token
    assert state_numel(state) == 3 * mla.state_size(10)


def test_absorbed_reference_equals_rebuilt_keys_and_values():
    torch.manual_seed(0)
    mla = mixerlab.create_token_mixer("mla", dim=16, num_heads=2, latent_dim=5, rope_dim=2).double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    y_fast, _ = mla(x)
    mla.mode = "reference"
    torch.testing.assert_close(mla(x)[0], y_fast)


def test_position_enters_only_through_the_decoupled_rotary_key():
    torch.manual_seed(0)
    mla = mixerlab.create_token_mixer("mla", dim=16, num_heads=2, latent_dim=6, rope_dim=4).double()
    x = torch.randn(1, 8, 16, dtype=torch.float64)
    perm = torch.cat([torch.randperm(7), torch.tensor([7])])  # shuffle the tokens before the last
    y, _ = mla(x)
    assert not torch.allclose(mla(x[:, perm])[0][:, -1], y[:, -1])  # rotary: order matters
    with torch.no_grad():
        mla.kr_proj.weight.zero_()  # no rotary key: scores forget positions
        q = mla.q_proj.weight.view(2, 8 + 4, 16)
        q[:, 8:].zero_()
    y, _ = mla(x)
    torch.testing.assert_close(mla(x[:, perm])[0][:, -1], y[:, -1])
