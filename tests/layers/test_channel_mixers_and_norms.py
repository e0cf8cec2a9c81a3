"""Registry-wide checks for channel mixers and norms: shape, gradients to every parameter, no NaN,
clear errors for unknown options and bad sizes."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.registry import CHANNEL_MIXERS, NORMS

KINDS = [(CHANNEL_MIXERS, n) for n in CHANNEL_MIXERS.list()] + [(NORMS, n) for n in NORMS.list()]
IDS = [f"{reg.kind}:{name}" for reg, name in KINDS]


def make(registry, name):
    torch.manual_seed(0)
    return registry.create(name, **registry.entry(name).test_kwargs).double()


@pytest.mark.parametrize(("registry", "name"), KINDS, ids=IDS)
def test_shape_gradients_finite(registry, name):
    block = make(registry, name)
    dim = registry.entry(name).test_kwargs["dim"]
    x = torch.randn(3, 5, dim, dtype=torch.float64, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: {pname} got no gradient"


@pytest.mark.parametrize(("registry", "name"), KINDS, ids=IDS)
def test_acts_per_position(registry, name):
    """A channel mixer or norm must not mix positions: changing one token leaves the others alone."""
    block = make(registry, name).eval()
    dim = registry.entry(name).test_kwargs["dim"]
    x = torch.randn(2, 6, dim, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 3] += 1.0
    y, y2 = block(x), block(x2)
    keep = [0, 1, 2, 4, 5]
    torch.testing.assert_close(y2[:, keep], y[:, keep])


@pytest.mark.parametrize(("registry", "name"), KINDS, ids=IDS)
def test_unknown_option(registry, name):
    with pytest.raises(ConfigError, match="bogus"):
        registry.create(name, **registry.entry(name).test_kwargs, bogus=1)


@pytest.mark.parametrize(("registry", "name"), KINDS, ids=IDS)
def test_bad_dim(registry, name):
    kwargs = {**registry.entry(name).test_kwargs, "dim": 0}
    with pytest.raises(ConfigError, match="dim=0"):
        registry.create(name, **kwargs)


@pytest.mark.parametrize(
    ("name", "gate"),
    [("swiglu", torch.nn.functional.silu), ("geglu", torch.nn.functional.gelu), ("reglu", torch.relu)],
)
def test_glu_matches_definition(name, gate):
    glu = mixerlab.create_channel_mixer(name, dim=8).double()
    x = torch.randn(3, 8, dtype=torch.float64)
    w_gate, w_up = glu.gate_up.weight.chunk(2, dim=0)
    expected = (gate(x @ w_gate.T) * (x @ w_up.T)) @ glu.down.weight.T
    torch.testing.assert_close(glu(x), expected)


def test_rmsnorm_matches_definition():
    norm = mixerlab.create_norm("rmsnorm", dim=4).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    expected = x / torch.sqrt(x.square().mean(-1, keepdim=True) + norm.eps)
    torch.testing.assert_close(norm(x), expected)


def test_dyt_matches_definition():
    norm = mixerlab.create_norm("dyt", dim=4, alpha_init=0.3).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    torch.testing.assert_close(norm(x), torch.tanh(0.3 * x))
