"""xLSTM mixers beyond the registry-wide contract: chunk sizes, options and their errors."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError


def _pair(name, **kwargs):
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer(name, **kwargs).double()
    x = torch.randn(2, 19, kwargs["dim"], dtype=torch.float64)
    return mixer, x


@pytest.mark.parametrize("chunk_size", [1, 4, 19, 64])
def test_mlstm_chunk_sizes_match_reference(chunk_size):
    mixer, x = _pair("mlstm", dim=16, num_heads=2, chunk_size=chunk_size)
    y, s = mixer(x)
    mixer.mode = "reference"
    y_ref, s_ref = mixer(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-7, atol=1e-9)
    for key in ("C", "n", "m"):
        torch.testing.assert_close(s[key], s_ref[key], rtol=1e-7, atol=1e-9)


def test_mlstm_without_soft_cap_and_with_head_dim():
    mixer, x = _pair("mlstm", dim=16, num_heads=2, head_dim=4, gate_soft_cap=None, chunk_size=5)
    y, s = mixer(x)
    assert s["C"].shape == (2, 2, 4, 4)
    mixer.mode = "reference"
    torch.testing.assert_close(y, mixer(x)[0], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize(
    ("name", "kwargs", "field"),
    [
        ("mlstm", {"chunk_size": 0}, "chunk_size=0"),
        ("mlstm", {"gate_soft_cap": -1.0}, "gate_soft_cap=-1.0"),
        ("slstm", {"conv_size": 1}, "conv_size=1"),
    ],
)
def test_bad_options_are_clear_errors(name, kwargs, field):
    with pytest.raises(ConfigError, match=field):
        mixerlab.create_token_mixer(name, dim=16, num_heads=2, **kwargs)


def test_slstm_without_convolution():
    mixer, x = _pair("slstm", dim=16, num_heads=4, conv_size=None)
    y, s = mixer(x)
    assert set(s) == {"c", "n", "m", "h"}
    assert mixer.state_size(5) * 2 == sum(t.numel() for t in s.values())
    mixer.mode = "reference"
    torch.testing.assert_close(y, mixer(x)[0], rtol=1e-7, atol=1e-9)


def test_slstm_output_depends_on_recurrent_weights():
    # The recurrent connections are what distinguish the sLSTM: zeroing them must change outputs.
    mixer, x = _pair("slstm", dim=16, num_heads=2)
    y, _ = mixer(x)
    with torch.no_grad():
        mixer.recurrent.zero_()
    y0, _ = mixer(x)
    torch.testing.assert_close(y[:, :1], y0[:, :1])  # first step sees h_0 = 0 either way
    assert not torch.allclose(y[:, 1:], y0[:, 1:])


@pytest.mark.parametrize("name", ["slstm", "srwm"])
def test_fused_step_loops_train_under_bf16_autocast(name):
    """Under autocast the gate inputs come out of the projections in bf16 while the recurrent
    weights stay float32: the hand-written backwards still give every parameter a finite gradient
    in its own dtype."""
    torch.manual_seed(0)
    mixer = mixerlab.create_token_mixer(name, dim=16, num_heads=2)
    x = torch.randn(2, 9, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, _ = mixer(x)
    y.float().square().mean().backward()
    assert torch.isfinite(y.float()).all()
    for pname, p in mixer.named_parameters():
        assert p.grad is not None and p.grad.dtype == p.dtype and torch.isfinite(p.grad).all(), pname
