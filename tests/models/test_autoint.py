"""AutoInt (arXiv:1810.11921): shapes, gradients, seeding, and interactions across fields."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.models.autoint import InteractingLayer

SIZES = {"num_features": 3, "cardinalities": [4, 3], "dim": 8, "depth": 2, "num_heads": 2}


def table(batch: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cats = torch.stack([torch.randint(0, c, (batch,), generator=g) for c in SIZES["cardinalities"]], 1)
    return {"numerical": torch.randn(batch, 3, generator=g, dtype=torch.float64), "categorical": cats}


def build(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return mixerlab.create_model("autoint", **{**SIZES, "num_classes": 3, **kwargs}, dtype=torch.float64)


def test_shapes_for_classify_and_regress_and_every_parameter_learns():
    model = build()
    logits, state = model(table())
    assert logits.shape == (5, 3) and state is None
    logits.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    values, _ = build(num_classes=None, num_outputs=1)(table())
    assert values.shape == (5,)


def test_same_seed_same_model_other_seed_other_model():
    x = table()
    torch.testing.assert_close(build(1)(x)[0], build(1)(x)[0], rtol=0, atol=0)
    assert not torch.allclose(build(1)(x)[0], build(2)(x)[0])


def test_one_changed_feature_reaches_every_field_after_one_interacting_layer_not_before():
    model = build()
    x = table(batch=1)
    changed = {k: v.clone() for k, v in x.items()}
    changed["numerical"][0, 1] += 1.0
    moved_before = (model.interactions(changed, 0) - model.interactions(x, 0)).abs().amax(-1)[0]
    # Before any interaction only the changed field's own embedding moves.
    assert moved_before[1] > 0 and torch.all(moved_before[[0, 2, 3, 4]] == 0)
    moved_after = (model.interactions(changed, 1) - model.interactions(x, 1)).abs().amax(-1)[0]
    assert torch.all(moved_after > 1e-9)


def test_interacting_layer_matches_a_per_field_per_head_loop():
    torch.manual_seed(0)
    layer = InteractingLayer(dim=6, num_heads=3).double()
    e = torch.randn(2, 5, 6, dtype=torch.float64)
    out = torch.empty_like(e)
    wq, wk, wv = layer.query.weight, layer.key.weight, layer.value.weight
    for b in range(2):
        for m in range(5):
            heads = []
            for h in range(3):
                rows = slice(2 * h, 2 * h + 2)
                q = wq[rows] @ e[b, m]
                scores = torch.stack([q @ (wk[rows] @ e[b, k]) for k in range(5)])
                weights = torch.exp(scores - scores.max()) / torch.exp(scores - scores.max()).sum()
                heads.append(sum(weights[k] * (wv[rows] @ e[b, k]) for k in range(5)))
            out[b, m] = torch.relu(torch.cat(heads) + layer.residual.weight @ e[b, m])
    torch.testing.assert_close(layer(e), out)


def test_block_specs_and_sizes_that_do_not_fit_are_errors():
    with pytest.raises(ConfigError, match="mixer"):
        build(mixer="attention")
    with pytest.raises(ConfigError, match="num_heads"):
        build(num_heads=3)
    with pytest.raises(ConfigError, match="num_classes"):
        build(num_classes=None)
