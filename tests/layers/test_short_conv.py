"""ShortConv: fast == reference in float64 (outputs and gradients), state carrying, options."""

from __future__ import annotations

import itertools
import pickle

import pytest
import torch

from mixerlab.errors import ConfigError
from mixerlab.layers.short_conv import ShortConv, load_legacy_conv_keys
from mixerlab.ops.conv1d import causal_conv1d_reference

B, T, C = 2, 13, 5


def _conv(W: int, **kwargs) -> ShortConv:
    torch.manual_seed(W)
    return ShortConv(C, W, **kwargs).double()


def _x(seq_len: int = T, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, seq_len, C, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("W", [1, 2, 4, 12])  # 12 takes the grouped F.conv1d path
@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("with_state", [False, True])
def test_fast_matches_reference_outputs_and_gradients(W, activation, with_state):
    conv = _conv(W, activation=activation)
    x = _x().requires_grad_()
    state = torch.randn(B, W - 1, C, dtype=torch.float64, requires_grad=True) if with_state else None
    leaves = [x, conv.weight, conv.bias] + ([state] if with_state else [])
    y, s = conv(x, state)
    y_ref, s_ref = conv(x, state, reference=True)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s, s_ref, rtol=0, atol=0)
    g = torch.randn_like(y)
    for got, want in zip(torch.autograd.grad(y, leaves, g), torch.autograd.grad(y_ref, leaves, g)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("W", [1, 3, 4])
def test_split_calls_and_one_token_steps_equal_one_call(reference, W):
    conv = _conv(W, activation="silu")
    x = _x()
    y_full, s_full = conv(x, reference=reference)
    for points in ([1], [5, 6], [2, 3, 4, 11]):
        ys, state = [], None
        for a, b in itertools.pairwise([0, *points, T]):
            y, state = conv(x[:, a:b], state, reference=reference)
            ys.append(y)
        torch.testing.assert_close(torch.cat(ys, 1), y_full, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(state, s_full, rtol=0, atol=0)
    ys, state = [], conv.init_state(B)
    for t in range(T):  # decoding: one token per call from the empty state
        y, state = conv(x[:, t : t + 1], state, reference=reference)
        ys.append(y)
    torch.testing.assert_close(torch.cat(ys, 1), y_full, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state, s_full, rtol=0, atol=0)
    assert state.shape == (B, W - 1, C) and state[0].numel() == conv.state_size()


def test_matches_the_op_with_bias_and_activation_options():
    x = _x()
    plain = _conv(3, bias=False)
    assert plain.bias is None
    y, _ = plain(x)
    torch.testing.assert_close(y, causal_conv1d_reference(x, plain.weight)[0])
    biased = _conv(3, activation="silu")
    y, _ = biased(x)
    torch.testing.assert_close(
        y, torch.nn.functional.silu(causal_conv1d_reference(x, biased.weight, biased.bias)[0])
    )


def test_initialisation_is_conv1d_default():
    W, channels = 4, 4096
    conv = ShortConv(channels, W)
    bound = W**-0.5
    for p in (conv.weight, conv.bias):
        assert p.abs().max() <= bound
        assert p.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)  # uniform on [-b, b]
    ref = torch.nn.Conv1d(channels, channels, W, groups=channels)
    assert ref.weight.abs().max() <= bound and ref.weight.abs().max() > 0.9 * bound


class _Old(torch.nn.Module):  # a mixer as it stored its filter before ShortConv
    def __init__(self) -> None:
        super().__init__()
        self.conv_weight = torch.nn.Parameter(torch.randn(C, 3))
        self.conv_bias = torch.nn.Parameter(torch.randn(C))


class _New(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = ShortConv(C, 3)
        load_legacy_conv_keys(self, "conv")


def test_checkpoints_with_the_old_flat_keys_load():
    old = _Old()
    new = pickle.loads(pickle.dumps(torch.nn.Sequential(_New())))  # the hook does not stop pickling
    new.load_state_dict({f"0.{k}": v for k, v in old.state_dict().items()})
    torch.testing.assert_close(new[0].conv.weight, old.conv_weight)
    torch.testing.assert_close(new[0].conv.bias, old.conv_bias)
    assert set(new.state_dict()) == {"0.conv.weight", "0.conv.bias"}


@pytest.mark.parametrize(
    "kwargs, field",
    [({"conv_size": 0}, "conv_size"), ({"activation": "gelu"}, "activation"), ({"bias": 1}, "bias")],
)
def test_bad_options_are_config_errors(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        ShortConv(C, **{"conv_size": 3, **kwargs})
