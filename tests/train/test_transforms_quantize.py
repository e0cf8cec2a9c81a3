"""Quantisation transforms, each tested for what defines it: bits per weight on disk, values on the
grid, the straight-through gradient, calibration, and the packed file loading back exactly."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from mixerlab.errors import ConfigError
from mixerlab.tasks.base import TaskData
from mixerlab.train import RunConfig, Trainer, from_dict
from mixerlab.train.transforms import TransformContext, create_transform, load_compressed, save_compressed
from mixerlab.train.transforms.quantize import ActQuant, BinaryPeriodicWeight, QuantLinear

WIDTH = 128


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(WIDTH, WIDTH, bias=False), nn.ReLU(), nn.Linear(WIDTH, WIDTH, bias=False))


def context(n: int = 64) -> TransformContext:
    torch.manual_seed(1)
    return TransformContext(
        data=TaskData(inputs=torch.randn(n, WIDTH), targets=torch.zeros(n, dtype=torch.long))
    )


def quantised(spec: dict, seed: int = 0) -> nn.Module:
    transform, _ = create_transform(spec)
    model, _ = transform.apply(mlp(seed), context())
    return transform.finalize(model)


def file_size(model: nn.Module) -> int:
    return save_compressed(model, io.BytesIO())


WEIGHTS = 2 * WIDTH * WIDTH


@pytest.mark.parametrize(
    ("spec", "bits"),
    [
        ({"name": "quantize", "options": {"bits": 8}}, 8),
        ({"name": "quantize", "options": {"bits": 4}}, 4),
        ({"name": "quantize", "options": {"bits": 4, "symmetric": False, "granularity": "tensor"}}, 4),
        ({"name": "fp8", "options": {"format": "e4m3"}}, 8),
        ({"name": "fp8", "options": {"format": "e5m2"}}, 8),
        ({"name": "bitnet", "options": {"skip": []}}, 1.6),
        ({"name": "biper", "options": {"skip": []}}, 1),
    ],
)
def test_weights_take_their_bits_on_disk_and_load_back_to_the_same_outputs(spec, bits):
    model = quantised(spec)
    size, dense = file_size(model), file_size(mlp())
    # The codes, plus at most a float scale (and zero point) per output row and a small header.
    overhead = 2 * 2 * WIDTH * 4 + 4096
    assert WEIGHTS * bits / 8 <= size <= WEIGHTS * bits / 8 + overhead
    assert dense >= WEIGHTS * 4
    buffer = io.BytesIO()
    save_compressed(model, buffer)
    fresh = quantised(spec, seed=5)  # same structure, other weights
    load_compressed(buffer, fresh)
    x = torch.randn(7, WIDTH)
    assert torch.equal(model(x), fresh(x))


def test_int_weights_lie_on_their_grid_per_channel():
    model = quantised({"name": "quantize", "options": {"bits": 4, "activations": None}})
    for layer in (model[0], model[2]):
        assert isinstance(layer, QuantLinear) and bool(layer.frozen)
        q = layer.weight / layer.weight_quant.scale  # one scale per output row: [out, 1]
        assert layer.weight_quant.scale.shape == (WIDTH, 1)
        assert torch.allclose(q, q.round(), atol=1e-4) and q.abs().max() <= 7 + 1e-4
        # Symmetric per-channel: every row reaches the end of the grid.
        assert torch.allclose(q.abs().amax(dim=1), torch.full((WIDTH,), 7.0), atol=1e-4)


def test_asymmetric_grid_has_a_zero_point_and_sixteen_levels():
    model = quantised({"name": "quantize", "options": {"bits": 4, "symmetric": False, "activations": None}})
    wq = model[0].weight_quant
    codes = model[0].weight / wq.scale + wq.zero
    assert torch.allclose(codes, codes.round(), atol=1e-3)
    assert codes.min() >= -1e-3 and codes.max() <= 15 + 1e-3


def test_post_training_activation_ranges_come_from_calibration():
    model = quantised({"name": "quantize", "options": {"bits": 8, "activations": 8}})
    act = model[0].act_quant
    data = context().data.inputs
    assert bool(act.ready) and act.lo == pytest.approx(float(data.min()), rel=1e-5)
    assert act.hi == pytest.approx(float(data.max()), rel=1e-5)
    out = act(torch.linspace(-1, 1, 1000))
    assert out.unique().numel() <= 256


def test_int8_ptq_stays_close_to_the_float_model():
    float_model, model = mlp(), quantised({"name": "quantize", "options": {"bits": 8}})
    x = context().data.inputs
    ref = float_model(x)
    assert (model(x) - ref).norm() / ref.norm() < 0.02


def test_straight_through_estimator_passes_the_gradient_unchanged():
    transform, _ = create_transform(
        {"name": "quantize", "options": {"bits": 4, "activations": None}, "when": "before"}
    )
    model, _ = transform.apply(mlp())
    layer = model[0]
    x = torch.randn(5, WIDTH)
    layer(x).sum().backward()
    # d/dW of sum(x W_q^T) with dW_q/dW = I: every row gets the column sums of x.
    torch.testing.assert_close(layer.weight.grad, x.sum(0).expand(WIDTH, WIDTH))


def test_quantisation_aware_training_ends_frozen_on_the_grid():
    config = from_dict(
        RunConfig,
        {
            "task": {"name": "synthetic_table", "options": {"num_examples": 200}},
            "model": {"name": "tabular", "dim": 16, "depth": 1},
            "train": {"epochs": 2, "batch_size": 32, "lr": 3e-3},
            "transforms": [{"name": "quantize", "options": {"bits": 8}, "when": "before"}],
        },
    )
    trainer = Trainer(config, progress=False)
    result = trainer.fit()
    layers = [m for m in trainer.model.modules() if isinstance(m, QuantLinear)]
    assert result.status == "finished" and layers and all(bool(m.frozen) for m in layers)
    for m in layers:
        q = m.weight / m.weight_quant.scale
        assert torch.allclose(q, q.round(), atol=1e-3)
        assert bool(m.act_quant.ready)  # the EMA range was tracked during training
    assert result.transforms[0]["when"] == "before" and result.transforms[0]["bytes"] > 0


def test_bitnet_weights_are_ternary_times_one_scale_and_activations_8_bit_per_token():
    model = quantised({"name": "bitnet", "options": {"skip": []}})
    layer = model[0]
    gamma = layer.weight_quant.scale
    assert gamma.numel() == 1
    assert set((layer.weight / gamma).round().unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert torch.allclose(layer.weight / gamma, (layer.weight / gamma).round(), atol=1e-5)
    x = torch.randn(3, 10, WIDTH)
    xq = layer.act_quant(x)
    step = x.abs().amax(-1, keepdim=True) / 127
    assert torch.allclose(xq / step, (xq / step).round(), atol=1e-3)


def test_biper_is_a_square_wave_forward_with_a_sine_gradient():
    torch.manual_seed(0)
    wq = BinaryPeriodicWeight(4, omega=7.0)
    w = (torch.randn(4, 16) * 0.5).requires_grad_()
    out = wq.fake(w)
    alpha = w.detach().abs().mean(dim=1, keepdim=True)
    expected = alpha * torch.where(torch.sin(7.0 * w.detach()) >= 0, 1.0, -1.0)
    torch.testing.assert_close(out, expected)
    # Periodic: weights of either sign binarise to both +1 and -1 (the sign function cannot).
    assert (expected[w.detach() > 0] < 0).any()
    out.sum().backward()
    torch.testing.assert_close(w.grad, alpha.expand(4, 16) * 7.0 * torch.cos(7.0 * w.detach()))


def test_fp8_weights_are_float8_values_times_a_scale():
    for fmt, dtype in (("e4m3", torch.float8_e4m3fn), ("e5m2", torch.float8_e5m2)):
        model = quantised({"name": "fp8", "options": {"format": fmt}})
        layer = model[0]
        scaled = layer.weight / layer.weight_quant.scale
        torch.testing.assert_close(scaled.to(dtype).float(), scaled, rtol=1e-6, atol=1e-6)
    e4, e5 = (quantised({"name": "fp8", "options": {"format": f}})[0].weight for f in ("e4m3", "e5m2"))
    assert not torch.equal(e4, e5)  # three mantissa bits against two


def test_cast_to_bfloat16_halves_the_file_and_float32_is_the_anchor():
    transform, _ = create_transform({"name": "cast", "options": {"dtype": "bfloat16"}})
    model, facts = transform.apply(mlp())
    dense = file_size(mlp())
    assert facts["bytes"] == file_size(model) and math.isclose(facts["bytes"] / dense, 0.5, rel_tol=0.02)
    anchor, facts = create_transform({"name": "cast"})[0].apply(mlp())
    assert facts["bytes"] == dense and torch.equal(anchor[0].weight, mlp()[0].weight)


def test_bad_quantisation_options_are_clear_errors():
    with pytest.raises(ConfigError, match="bits"):
        create_transform({"name": "quantize", "options": {"bits": 3}})
    with pytest.raises(ConfigError, match="format"):
        create_transform({"name": "fp8", "options": {"format": "e3m4"}})
    with pytest.raises(ConfigError, match="granularity"):
        create_transform({"name": "quantize", "options": {"granularity": "row"}})
    with pytest.raises(ConfigError, match="context.data"):
        create_transform({"name": "quantize"})[0].apply(mlp())


def test_act_quant_passes_through_until_it_has_a_range():
    act = ActQuant(8, False, "range")
    x = torch.randn(10)
    assert torch.equal(act(x), x)
