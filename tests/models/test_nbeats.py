"""N-BEATS (arXiv:1905.10437): shapes, gradients, seeding, the trend basis and the doubly-residual links."""

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.models.nbeats import NBeats


def _model(**overrides) -> NBeats:
    kwargs = {"context": 13, "horizon": 7, "num_channels": 2, "dim": 8, "depth": 2, **overrides}
    return mixerlab.create_model("nbeats", **kwargs)


def test_shapes_gradients_and_seed():
    torch.manual_seed(0)
    model = _model(stacks=["trend", "seasonality", "generic"])
    x = torch.randn(3, 13, 2)
    y, state = model(x)
    assert y.shape == (3, 7, 2) and state is None and torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    torch.manual_seed(0)
    again = _model(stacks=["trend", "seasonality", "generic"])
    torch.testing.assert_close(again(x)[0], y, rtol=0, atol=0)
    torch.manual_seed(1)
    assert not torch.allclose(_model(stacks=["trend", "seasonality", "generic"])(x)[0], y)


def test_the_last_block_has_no_backcast_and_channels_are_independent():
    torch.manual_seed(0)
    model = _model()
    assert model.blocks[-1].theta_b is None and all(b.theta_b is not None for b in model.blocks[:-1])
    x = torch.randn(2, 13, 2)
    changed = x.clone()
    changed[:, :, 0] += torch.randn(2, 13)
    y, y2 = model(x)[0], model(changed)[0]
    torch.testing.assert_close(y[..., 1], y2[..., 1])
    assert not torch.allclose(y[..., 0], y2[..., 0])


@pytest.mark.parametrize("degree", [1, 2])
def test_trend_stack_forecast_is_a_polynomial_of_its_degree(degree):
    torch.manual_seed(0)
    model = _model(stacks=["trend"], degree=degree, num_channels=1).double()
    y = model(torch.randn(4, 13, 1, dtype=torch.float64))[0][..., 0]  # [4, horizon]
    # Equispaced time steps: the (degree + 1)-th difference of a degree-p polynomial vanishes,
    # the degree-th does not (RevIN's inverse is affine, so it keeps the degree). The basis is
    # stored at float32 precision, hence the relative tolerance.
    scale = y.abs().max()
    assert torch.diff(y, n=degree + 1, dim=1).abs().max() < 1e-6 * scale
    assert torch.diff(y, n=degree, dim=1).abs().min() > 1e-3 * scale


def test_backcast_is_subtracted_between_blocks():
    torch.manual_seed(0)
    model = _model(stacks=["generic", "trend"], num_channels=1).double()
    x = torch.randn(3, 13, 1, dtype=torch.float64)
    seen = []
    for block in model.blocks:
        block.register_forward_hook(lambda m, args, out: seen.append((args[0], out)))
    y = model(x)[0]
    # Reference: the paper's loop, x_{l+1} = x_l - backcast_l, forecast = sum of block forecasts.
    pre, context = model.stem(x)
    residual = model.normalise(x, context)[..., 0]
    total = torch.zeros(3, 7, dtype=torch.float64)
    for i, block in enumerate(model.blocks):
        torch.testing.assert_close(seen[i][0], residual)
        backcast, forecast = block(residual, pre[:, 0] if i == 0 else None)
        total = total + forecast
        if backcast is not None:
            assert backcast.abs().max() > 0
            residual = residual - backcast
    torch.testing.assert_close(y, model.stem.inverse(total[..., None], context))


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="mixer"):
        _model(mixer="attention")
    with pytest.raises(ConfigError, match="stacks"):
        _model(stacks=["cubic"])
    with pytest.raises(ConfigError, match="inputs.shape"):
        _model()(torch.randn(2, 13, 3))
