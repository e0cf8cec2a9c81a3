"""PatchTST (arXiv:2211.14730): channel independence, RevIN, shapes, gradients, seeding."""

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError


def _model(mixer="attention", **overrides):
    kwargs = {"context": 13, "horizon": 5, "num_channels": 3, "dim": 8, "depth": 1, "patch_len": 4}
    return mixerlab.create_model("patchtst", **{**kwargs, "mixer": mixer, **overrides})


@pytest.mark.parametrize("mixer", [{"name": "attention", "num_heads": 2}, "mingru"])
def test_changing_one_channel_leaves_the_others_forecasts(mixer):
    torch.manual_seed(0)
    model = _model(mixer)
    x = torch.randn(2, 13, 3)
    changed = x.clone()
    changed[:, :, 0] = torch.randn(2, 13) * 4 + 2
    y, y2 = model(x)[0], model(changed)[0]
    assert y.shape == (2, 5, 3)
    torch.testing.assert_close(y[..., 1:], y2[..., 1:])
    assert not torch.allclose(y[..., 0], y2[..., 0])


def test_the_forecaster_without_channel_independence_mixes_channels():
    # What channel independence changes: the forecaster's patches hold every channel.
    torch.manual_seed(0)
    model = mixerlab.create_model("forecaster", context=12, horizon=5, num_channels=3, dim=8, depth=1)
    x = torch.randn(2, 12, 3)
    changed = x.clone()
    changed[:, :, 0] += 1.0 + torch.randn(2, 12)
    assert not torch.allclose(model(x)[0][..., 1], model(changed)[0][..., 1])


def test_revin_shapes_gradients_and_seed():
    torch.manual_seed(0)
    model = _model()
    x = torch.randn(2, 13, 3)
    y = model(x)[0]
    # RevIN: each channel's forecast moves and scales with its own context.
    scale, shift = torch.tensor([2.0, 0.5, 3.0]), torch.tensor([1.0, -4.0, 7.0])
    torch.testing.assert_close(model(x * scale + shift)[0], y * scale + shift, rtol=1e-4, atol=1e-4)
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    torch.manual_seed(0)
    torch.testing.assert_close(_model()(x)[0], y, rtol=0, atol=0)


def test_wrong_channels_is_a_config_error():
    with pytest.raises(ConfigError, match="inputs.shape"):
        _model()(torch.randn(2, 13, 2))
