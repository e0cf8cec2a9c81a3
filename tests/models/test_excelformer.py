"""ExcelFormer (arXiv:2301.02819): shapes, gradients, seeding, the semi-permeable mask, its MI ranking."""

from __future__ import annotations

import math

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.models.excelformer import SemiPermeableAttention, mutual_information, semi_permeable_mask
from mixerlab.tasks.base import TaskData

# Fields: 3 numerical then 1 categorical; field 0 most informative, field 3 least.
IMPORTANCE = [0.9, 0.2, 0.5, 0.1]
SIZES = {"num_features": 3, "cardinalities": [4], "dim": 8, "depth": 2, "num_heads": 2}


def table(batch: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "numerical": torch.randn(batch, 3, generator=g, dtype=torch.float64),
        "categorical": torch.randint(0, 4, (batch, 1), generator=g),
    }


def build(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    options = {**SIZES, "num_classes": 3, "importance": IMPORTANCE, "init_scale": 1.0, **kwargs}
    return mixerlab.create_model("excelformer", **options, dtype=torch.float64)


def test_shapes_gradients_and_seeding():
    model = build()
    logits, state = model(table())
    assert logits.shape == (5, 3) and state is None
    logits.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert build(num_classes=None, num_outputs=1)(table())[0].shape == (5,)
    torch.testing.assert_close(build(1)(table())[0], build(1)(table())[0], rtol=0, atol=0)
    assert not torch.allclose(build(1)(table())[0], build(2)(table())[0])


def test_a_less_informative_field_never_changes_a_more_informative_one():
    model = build()
    x = table(batch=2)
    base = model.fields(x)
    changed = {k: v.clone() for k, v in x.items()}
    changed["numerical"][:, 1] += 3.0  # field 1 (0.2): only fields 1 and 3 (0.1) may move
    moved = (model.fields(changed) - base).abs().amax(dim=(0, 2))
    assert moved[0] == 0 and moved[2] == 0
    assert moved[1] > 0 and moved[3] > 0
    changed = {k: v.clone() for k, v in x.items()}
    changed["numerical"][:, 0] += 3.0  # the most informative field reaches every field
    assert torch.all((model.fields(changed) - base).abs().amax(dim=(0, 2)) > 0)


def test_mask_is_at_least_as_informative_and_attention_matches_a_loop():
    importance = torch.tensor([0.3, 0.1, 0.3, 0.7], dtype=torch.float64)
    mask = semi_permeable_mask(importance)
    for i in range(4):
        for j in range(4):
            assert mask[i, j] == (importance[j] >= importance[i])
    torch.manual_seed(0)
    attn = SemiPermeableAttention(dim=4, num_heads=2, init_scale=1.0).double()
    x = torch.randn(2, 4, 4, dtype=torch.float64)
    q, k, v = attn.query(x), attn.key(x), attn.value(x)
    out = torch.zeros_like(x)
    for b in range(2):
        for i in range(4):
            for h in range(2):
                cols = slice(2 * h, 2 * h + 2)
                seen = [j for j in range(4) if importance[j] >= importance[i]]
                scores = torch.stack([q[b, i, cols] @ k[b, j, cols] / math.sqrt(2) for j in seen])
                weights = scores.softmax(0)
                out[b, i, cols] = sum(w * v[b, j, cols] for w, j in zip(weights, seen))
    torch.testing.assert_close(attn(x, importance), attn.out(out))


def test_mutual_information_ranks_the_field_that_sets_the_label_first_and_is_kept_by_the_model():
    g = torch.Generator().manual_seed(0)
    numerical = torch.randn(120, 3, generator=g)
    categorical = torch.randint(0, 4, (120, 1), generator=g)
    labels = (numerical[:, 2] > 0).long()
    data = TaskData({"numerical": numerical, "categorical": categorical}, labels)
    scores = mutual_information(data)
    assert scores.shape == (4,) and scores.argmax() == 2
    torch.testing.assert_close(scores, mutual_information(data))  # a function of the data
    model = build(importance=None)
    assert torch.all(model.importance == 1)  # unfitted: every field ranks equal
    model.fit_to_data(data)  # the hook a trainer calls with its training split
    torch.testing.assert_close(model.importance, scores)
    assert "importance" in model.state_dict()  # saved with the weights
    values = TaskData({"numerical": numerical, "categorical": categorical}, numerical[:, 0].double() * 2)
    assert mutual_information(values).argmax() == 0  # float targets: regression MI


def test_wrong_importance_and_block_specs_are_errors():
    with pytest.raises(ConfigError, match="importance"):
        build(importance=[1.0, 2.0])
    with pytest.raises(ConfigError, match="channel_mixer"):
        build(channel_mixer="swiglu")
