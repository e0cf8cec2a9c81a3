"""Image model structure: stage-wise (pyramid) backbones, EViT token reduction, the Scaling-MLPs model."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.models.backbone import StageBackbone
from mixerlab.models.token_reduction import TokenReorganization, flops_fraction

IO = {"image_size": 8, "in_chans": 1, "num_classes": 3}


def image_model(**kwargs):
    torch.manual_seed(0)
    return mixerlab.create_model("image_classifier", **IO, **{"dim": 8, "depth": 1, **kwargs})


def images(n: int = 2, size: int = 8) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0))


# -- stages ---------------------------------------------------------------------------------------


def test_stages_halve_the_grid_and_take_their_own_widths_and_mixers():
    model = image_model(
        stages=[{"depth": 2, "mixer": "gnconv"}, {"dim": 12, "mixer": {"name": "attention", "num_heads": 2}}],
        mixer={"name": "gnconv", "kernel_size": 3},
    )
    backbone = model.backbone
    assert isinstance(backbone, StageBackbone)
    assert backbone.grids == [(4, 4), (2, 2)] and backbone.dims == [8, 12]
    assert [len(s.blocks) for s in backbone.stages] == [2, 1]  # stage 1 takes the model's depth
    assert backbone.stages[0].mixers[0].grid == (4, 4)
    assert type(backbone.stages[1].mixers[0]).__name__ == "Attention"
    pred, state = model(images())
    assert pred.shape == (2, 3) and state == {}


def test_default_stage_widths_double_and_odd_grids_are_padded():
    model = mixerlab.create_model(
        "image_classifier", image_size=6, in_chans=1, num_classes=3, dim=8, depth=1,
        mixer="pfpool", stages=[{}, {}, {}],
    )  # fmt: skip
    assert model.backbone.dims == [8, 16, 32]
    assert model.backbone.grids == [(3, 3), (2, 2), (1, 1)]
    assert model(images(size=6))[0].shape == (2, 3)


def test_every_parameter_of_a_pyramid_learns():
    model = mixerlab.create_model("image_stages", **IO, dim=8, depth=1)
    model(images())[0].square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_a_single_stage_is_the_isotropic_model():
    iso = image_model(mixer="gnconv")
    one = image_model(mixer="gnconv", stages=[{}])
    assert sum(p.numel() for p in iso.parameters()) == sum(p.numel() for p in one.parameters())


def test_bad_stages_are_clear_errors():
    with pytest.raises(ConfigError, match="width"):
        image_model(stages=[{"width": 8}])
    with pytest.raises(ConfigError, match="1x1"):
        image_model(stages=[{}, {}, {}, {}])  # 4x4 -> 2x2 -> 1x1 -> nothing left to halve
    with pytest.raises(ConfigError, match="token_reduction"):
        image_model(stages=[{}, {}], token_reduction={"keep_ratio": 0.5, "layers": [0]})


# -- EViT -----------------------------------------------------------------------------------------


def test_evit_keeps_the_most_attended_tokens_and_fuses_the_rest():
    reorg = TokenReorganization(keep_ratio=0.5, num_prefix_tokens=1)
    x = torch.randn(2, 9, 4, generator=torch.Generator().manual_seed(0))
    out = reorg(x)
    assert out.shape == (2, 1 + 4 + 1, 4)
    attn = reorg.attentiveness(x)
    torch.testing.assert_close(out[:, 0], x[:, 0])  # the class token stays first
    for b in range(2):
        top = attn[b].topk(4).indices.sort().values
        torch.testing.assert_close(out[b, 1:5], x[b, 1:][top])  # kept in their original order
        rest = torch.ones(8, dtype=torch.bool)
        rest[top] = False
        torch.testing.assert_close(out[b, 5], (attn[b, rest, None] * x[b, 1:][rest]).sum(0))


def test_evit_reduces_later_layers_and_their_flops():
    model = image_model(depth=3, mixer={"name": "attention", "num_heads": 2})
    reduced = image_model(
        depth=3,
        mixer={"name": "attention", "num_heads": 2},
        token_reduction={"keep_ratio": 0.5, "layers": [1]},
    )
    assert reduced.backbone.tokens_per_layer(17) == [17, 10, 10]
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reduced.parameters())
    x = images()
    assert reduced(x)[0].shape == (2, 3)
    fraction = flops_fraction(reduced, x)
    assert 0.5 < fraction < 0.8
    assert flops_fraction(model, x) == 1.0
    harsher = image_model(
        depth=3,
        mixer={"name": "attention", "num_heads": 2},
        token_reduction={"keep_ratio": 0.25, "layers": [1]},
    )
    assert flops_fraction(harsher, x) < fraction


def test_evit_works_with_a_recurrent_bidirectional_mixer_and_trains():
    model = image_model(depth=2, mixer="mingru", token_reduction={"keep_ratio": 0.5, "layers": [1]})
    model(images())[0].square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_evit_misuse_is_a_clear_error():
    with pytest.raises(ConfigError, match="grid"):  # a grid mixer after the reduction
        image_model(depth=2, mixer="gnconv", token_reduction={"keep_ratio": 0.5, "layers": [1]})
    # Grid mixers before the reduction are fine.
    image_model(depth=2, mixer=["gnconv", "attention"], token_reduction={"keep_ratio": 0.5, "layers": [1]})
    with pytest.raises(ConfigError, match="class token"):
        image_model(
            depth=2,
            stem={"name": "patch", "patch_size": 2, "class_token": False},
            head={"name": "classify", "pool": "mean"},
            token_reduction={"keep_ratio": 0.5, "layers": [1]},
        )
    with pytest.raises(ConfigError, match="layers"):
        image_model(depth=2, token_reduction={"keep_ratio": 0.5, "layers": [2]})
    with pytest.raises(ConfigError, match="keep_ratio"):
        image_model(depth=2, token_reduction={"keep_ratio": 1.5, "layers": [1]})
    with pytest.raises(ConfigError, match="token_reduction"):
        image_model(depth=2, token_reduction={"keep": 0.5, "layers": [1]})


# -- Scaling MLPs ---------------------------------------------------------------------------------


def test_scaling_mlp_sees_the_image_as_one_token():
    model = mixerlab.create_model("scaling_mlp", **IO, dim=16, depth=2)
    assert model.stem.num_tokens() == 1
    assert all(type(m).__name__ == "NoTokenMixing" for m in model.backbone.mixers)
    assert model(images())[0].shape == (2, 3)
    with pytest.raises(ConfigError, match="mixer"):
        mixerlab.create_model("scaling_mlp", **IO, mixer="attention")
