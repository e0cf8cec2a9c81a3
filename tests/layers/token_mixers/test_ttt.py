"""TTT-Linear / TTT-MLP: the hidden state is trained on the sequence (its reconstruction loss
falls), one mini-batch is one gradient step taken at its start, and the state does not grow."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.ops.ttt.reference import layer_norm


def _make(name: str, **kw):
    torch.manual_seed(0)
    return mixerlab.create_token_mixer(name, dim=16, num_heads=2, **kw).double()


def _inner_loss(mixer, weights, x):
    """Mean over tokens of ``1/2 ||LN(f(k)) + k - v||^2`` with the inner weights ``weights``."""
    _, k, v = rearrange(mixer.qkv(x), "b t (n h k) -> n b t h k", n=3, h=mixer.num_heads)
    if len(weights) == 1:
        pred = torch.einsum("bhoi,bthi->btho", weights[0], k)
    else:
        pred = torch.einsum(
            "bhom,bthm->btho", weights[1], F.gelu(torch.einsum("bhmi,bthi->bthm", weights[0], k))
        )
    return 0.5 * (layer_norm(pred, mixer.ln_weight, mixer.ln_bias) + k - v).square().sum(-1).mean()


@pytest.mark.parametrize("name", ["ttt_linear", "ttt_mlp"])
def test_reading_the_sequence_lowers_its_reconstruction_loss(name):
    mixer = _make(name, mini_batch_size=4, base_lr=0.25)
    x = torch.randn(1, 24, 16, dtype=torch.float64).repeat(1, 4, 1)  # a repeated segment: learnable
    with torch.no_grad():
        _, state = mixer(x)
        initial = [getattr(mixer, n).expand(1, *getattr(mixer, n).shape) for n in mixer.weight_names]
        trained = [state[n] for n in mixer.weight_names]
        assert _inner_loss(mixer, trained, x) < 0.75 * _inner_loss(mixer, initial, x)


def test_one_mini_batch_is_one_gradient_step_at_its_start():
    mixer = _make("ttt_linear", mini_batch_size=64)
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    _, state = mixer(x)
    # W_T = W_0 - sum_t eta_t grad loss_t(W_0): the gradient of the eta-weighted sum of losses at W_0
    w0 = mixer.w.detach().expand(2, *mixer.w.shape).clone().requires_grad_()
    _, k, v = rearrange(mixer.qkv(x), "b t (n h k) -> n b t h k", n=3, h=2)
    eta = mixer.base_lr * torch.sigmoid(mixer.lr_proj(x)) / mixer.head_dim
    pred = layer_norm(torch.einsum("bhoi,bthi->btho", w0, k), mixer.ln_weight, mixer.ln_bias)
    weighted = (eta.detach() * 0.5 * (pred + k - v).square().sum(-1)).sum()
    (grad,) = torch.autograd.grad(weighted, w0)
    torch.testing.assert_close(state["w"], w0 - grad)
    torch.testing.assert_close(state["w_base"], w0)  # the mini-batch is not complete yet
    assert state["pos"].tolist() == [11.0, 11.0]


@pytest.mark.parametrize("name", ["ttt_linear", "ttt_mlp"])
def test_state_size_is_constant(name):
    mixer = _make(name)
    assert mixer.state_size(1) == mixer.state_size(100_000)


def test_bad_mini_batch_size_is_an_error():
    with pytest.raises(ConfigError, match="mini_batch_size"):
        mixerlab.create_token_mixer("ttt_linear", dim=16, num_heads=2, mini_batch_size=0)
