"""Layer-specific checks for linear_attention, retention, gla and based: feature maps, the
normaliser, retention's decays and rotations, GLA's gate layout, Based's branches and state."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.layers.token_mixers.linear_attention import feature_map, head_norm
from mixerlab.ops.rotary import rotary


def x_of(dim: int, seq_len: int = 19, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, seq_len, dim, generator=g, dtype=torch.float64)


def test_taylor_map_expands_exp_to_second_order():
    q, k = torch.randn(2, 7, 6, dtype=torch.float64).unbind(0)
    f = q.shape[-1]
    dot = (q * k).sum(-1)
    phi = (feature_map(q, "taylor") * feature_map(k, "taylor")).sum(-1)
    torch.testing.assert_close(phi, 1 + dot / f**0.5 + dot**2 / (2 * f))
    assert feature_map(q, "taylor").shape[-1] == 1 + f + f * f


def test_elu_plus_one_is_positive():
    x = torch.linspace(-30, 30, 101, dtype=torch.float64)
    assert (feature_map(x, "elu+1") > 0).all()


@pytest.mark.parametrize("fmap", ["elu+1", "taylor"])
def test_normalised_output_is_a_convex_mix_of_values(fmap):
    # With positive kernel weights, o_t = sum_s w_ts v_s / sum_s w_ts: the first output is v_0 itself.
    dim, heads = 8, 2
    mixer = mixerlab.create_token_mixer("linear_attention", dim=dim, num_heads=heads, feature_map=fmap)
    mixer = mixer.double()
    with torch.no_grad():
        mixer.o_proj.weight.copy_(torch.eye(dim))
    x = x_of(dim)
    y, _ = mixer(x)
    torch.testing.assert_close(y[:, 0], mixer.v_proj(x)[:, 0], rtol=1e-5, atol=1e-6)
    v = mixer.v_proj(x)
    lo, hi = v.cummin(1).values, v.cummax(1).values
    tol = 1e-5  # the eps in the denominator pulls outputs very slightly towards 0
    assert (y >= lo - tol).all() and (y <= hi + tol).all()


def test_identity_map_needs_normalize_false():
    with pytest.raises(ConfigError, match="normalize=True"):
        mixerlab.create_token_mixer("linear_attention", dim=8, num_heads=2, feature_map="identity")
    mixer = mixerlab.create_token_mixer(
        "linear_attention", dim=8, num_heads=2, feature_map="identity", normalize=False
    )
    assert set(mixer.init_state(1)) == {"S"}


def test_unknown_feature_map_is_a_clear_error():
    with pytest.raises(ConfigError, match="feature_map='relu'"):
        mixerlab.create_token_mixer("linear_attention", dim=8, num_heads=2, feature_map="relu")


def test_retention_decays_are_the_papers():
    mixer = mixerlab.create_token_mixer("retention", dim=32, num_heads=4)
    expected = torch.tensor([1 - 2**-5, 1 - 2**-6, 1 - 2**-7, 1 - 2**-8], dtype=torch.float64)
    torch.testing.assert_close(mixer.log_gamma.double().exp(), expected)


@pytest.mark.parametrize("mode", ["chunk", "reference"])
def test_retention_equals_parallel_form_with_absolute_rotations(mode):
    # RetNet eq. 5 with Theta as rotations at absolute positions n, evaluated on a suffix that
    # starts after a prefix passed as state: the state needs no position counter.
    dim, H = 16, 2
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer("retention", dim=dim, num_heads=H, chunk_size=4).double()
    mixer.mode = mode
    x = x_of(dim, seq_len=15)
    cut = 6
    _, state = mixer(x[:, :cut])
    y, _ = mixer(x[:, cut:], state=state)

    q, k = rearrange(mixer.qk_proj(x), "b t (two h k) -> two b t h k", two=2, h=H)
    k = k * mixer.key_dim**-0.5
    v = rearrange(mixer.v_proj(x), "b t (h v) -> b t h v", h=H)
    n = torch.arange(x.shape[1])
    q, k = rotary(q, n), rotary(k, n)
    gamma = mixer.log_gamma.exp()
    diff = (n[:, None] - n[None, :]).double()
    D = torch.where(diff >= 0, gamma[:, None, None] ** diff.clamp(min=0), 0.0)  # [H, T, T]
    o = torch.einsum("bthk,bshk,hts,bshv->bthv", q, k, D, v)
    o = head_norm(o, mixer.norm_weight, mixer.norm_bias, eps=1e-5)
    expected = mixer.o_proj(torch.nn.functional.silu(mixer.g_proj(x)) * rearrange(o, "b t h v -> b t (h v)"))
    torch.testing.assert_close(y, expected[:, cut:])


def test_gla_sizes_follow_expand_defaults():
    mixer = mixerlab.create_token_mixer("gla", dim=64, num_heads=4)
    assert (mixer.key_dim, mixer.value_dim) == (8, 16)  # expand_k = 0.5, expand_v = 1
    assert mixer.gate_down.out_features == 16
    assert mixer.state_size(100) == 4 * 8 * 16


def test_gla_bad_expand_is_a_clear_error():
    with pytest.raises(ConfigError, match="expand_k=0.3"):
        mixerlab.create_token_mixer("gla", dim=16, num_heads=2, expand_k=0.3)


def test_gla_open_gates_reduce_to_linear_attention():
    # A huge gate bias makes alpha = 1: GLA's state becomes the plain sum of k^T v.
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer("gla", dim=16, num_heads=2, chunk_size=8).double()
    with torch.no_grad():
        mixer.gate_up.bias.fill_(1e4)
    x = x_of(16)
    _, state = mixer(x)
    k = rearrange(mixer.qk_proj(x), "b t (two h k) -> two b t h k", two=2, h=2)[1]
    v = rearrange(mixer.v_proj(x), "b t (h v) -> b t h v", h=2)
    torch.testing.assert_close(state["S"], torch.einsum("bthk,bthv->bhkv", k, v))


def test_gla_strong_gates_stay_finite_in_float32():
    mixer = mixerlab.create_token_mixer("gla", dim=16, num_heads=2, chunk_size=32)
    with torch.no_grad():
        mixer.gate_up.bias.fill_(-2000.0)  # log alpha ~ -125 per step
    x = torch.randn(2, 70, 16, requires_grad=True)
    y, state = mixer(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


def test_based_is_the_sum_of_its_branches():
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer("based", dim=16, num_heads=2, feature_dim=4, window=5).double()
    x = x_of(16)
    y, _ = mixer(x)
    y_window, _ = mixer.window_attention(x)
    with torch.no_grad():
        mixer.o_proj.weight.zero_()
    y_no_linear, _ = mixer(x)
    torch.testing.assert_close(y_no_linear, y_window)
    assert not torch.allclose(y, y_window)


def test_based_state_is_bounded_and_mode_reaches_the_window():
    mixer = mixerlab.create_token_mixer("based", dim=16, num_heads=2, feature_dim=4, window=5, conv_size=3)
    assert mixer.state_size(100) == mixer.state_size(4) == mixer.state_size(1000)
    assert mixer.state_size(0) < mixer.state_size(4)
    mixer.mode = "reference"
    assert mixer.window_attention.mode == "reference"
    mixer.mode = "chunk"
    assert mixer.window_attention.mode == "chunk"  # the blocked O(T w) form
