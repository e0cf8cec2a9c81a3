"""TPGN (arXiv:2409.17703): shapes, gradients, seeding, and what its two branches read."""

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.models.tpgn import TPGN


def _model(**overrides) -> TPGN:
    kwargs = {"context": 13, "horizon": 6, "num_channels": 2, "dim": 8, "period": 4, **overrides}
    return mixerlab.create_model("tpgn", **kwargs)


def test_shapes_gradients_and_seed():
    torch.manual_seed(0)
    model = _model()
    assert (model.rows, model.future_rows) == (4, 2)  # 13 steps: 4 periods of 4, 3 padded
    x = torch.randn(3, 13, 2)
    y, state = model(x)
    assert y.shape == (3, 6, 2) and state is None and torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    torch.manual_seed(0)
    torch.testing.assert_close(_model()(x)[0], y, rtol=0, atol=0)
    torch.manual_seed(1)
    assert not torch.allclose(_model()(x)[0], y)


def test_long_branch_runs_pgn_over_each_phase_across_periods():
    torch.manual_seed(0)
    model = _model(num_channels=1).double()
    x = torch.randn(2, 13, 1, dtype=torch.float64)
    seen = []
    model.pgn.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    model(x)
    # Reference: the padded, normalised series cut into rows of P steps; phase p's sequence is
    # the value at column p of each row, embedded.
    _, context = model.stem(x)
    mean, std = context["revin"]
    v = ((x - mean) / std * model.stem.affine_weight + model.stem.affine_bias)[..., 0]  # [2, 13]
    v = torch.cat([v[:, :1].expand(-1, 3), v], dim=1)  # front padding with the first value
    for n in range(2):
        for p in range(4):
            column = torch.stack([v[n, r * 4 + p] for r in range(4)])[:, None]  # [R, 1]
            torch.testing.assert_close(seen[0][n * 4 + p], model.value_embed(column))


def test_the_forecast_moves_with_its_context_and_channels_are_independent():
    torch.manual_seed(0)
    model = _model()
    x = torch.randn(2, 13, 2)
    y = model(x)[0]
    torch.testing.assert_close(model(x * 2.0 + 3.0)[0], y * 2.0 + 3.0, rtol=1e-4, atol=1e-4)
    changed = x.clone()
    changed[:, :, 0] = torch.randn(2, 13)
    torch.testing.assert_close(model(changed)[0][..., 1], y[..., 1])


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="mixer"):
        _model(mixer="attention")
    with pytest.raises(ConfigError, match="period"):
        _model(period=14)
    with pytest.raises(ConfigError, match="depth"):
        _model(depth=2)
