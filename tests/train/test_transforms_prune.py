"""Pruning transforms: 2:4 groups, structured heads and channels equal to zeroing them, the cubic
schedule, and pruned weights taking fewer bytes on disk."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from mixerlab.layers.channel_mixers.glu import GLU
from mixerlab.layers.channel_mixers.mlp import MLP
from mixerlab.layers.token_mixers.attention import Attention
from mixerlab.tasks.base import TaskData
from mixerlab.train import RunConfig, Trainer, from_dict
from mixerlab.train.transforms import (
    TransformContext,
    create_transform,
    load_compressed,
    save_compressed,
    sparsity,
)
from mixerlab.train.transforms.prune import cubic_sparsity


def test_two_four_sparsity_has_exactly_two_non_zeros_in_every_group_of_four():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 16), nn.Linear(16, 8), nn.Linear(6, 3))
    transform, _ = create_transform({"name": "prune_nm", "options": {"n": 2, "m": 4}})
    model, facts = transform.apply(model)
    model = transform.finalize(model)
    for layer in model[:2]:
        groups = (layer.weight != 0).reshape(layer.out_features, -1, 4).sum(-1)
        assert (groups == 2).all()
        # The two kept are the two largest of their group.
        w = layer.weight.detach().abs().reshape(layer.out_features, -1, 4)
        assert (w.sort(-1).values[..., :2] == 0).all()
    assert facts["skipped"] == 1 and (model[2].weight != 0).all()  # 6 inputs: no groups of 4


def test_pruned_weights_take_fewer_bytes_and_load_back():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 128, bias=False))
    dense = save_compressed(model, io.BytesIO())
    transform, _ = create_transform({"name": "prune_nm"})
    model, facts = transform.apply(model)
    model = transform.finalize(model)
    buffer = io.BytesIO()
    assert save_compressed(model, buffer) == facts["bytes"] < 0.6 * dense  # half the values + a bit mask
    fresh = load_compressed(buffer, nn.Sequential(nn.Linear(128, 128, bias=False)))
    assert torch.equal(fresh[0].weight, model[0].weight)


def _context(x: torch.Tensor) -> TransformContext:
    return TransformContext(data=TaskData(inputs=x, targets=torch.zeros(len(x), dtype=torch.long)))


class Wrap(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        out = self.inner(x)
        return out[0] if isinstance(out, tuple) else out


def test_head_pruning_equals_zeroing_the_removed_heads():
    torch.manual_seed(0)
    attention = Attention(dim=16, num_heads=4)
    x = torch.randn(8, 11, 16)
    reference = Wrap(Attention(dim=16, num_heads=4))
    reference.load_state_dict(Wrap(attention).state_dict())
    transform, _ = create_transform({"name": "prune_heads", "options": {"amount": 0.5}})
    model, facts = transform.apply(Wrap(attention), _context(x))
    assert model.inner.num_heads == 2 and facts["heads_removed"] == 2
    assert facts["params_removed"] == 2 * 4 * 16 * 4  # q, k, v rows and o columns of two heads
    kept = {int(i) // 4 for i in (model.inner.o_proj.weight[0:1] != 0).nonzero()[:, 1]}
    # The same output as the full layer with the other heads' output columns zeroed.
    with torch.no_grad():
        w = reference.inner.o_proj.weight.reshape(16, 4, 4)
        for h in range(4):
            if not any(
                torch.equal(reference.inner.o_proj.weight[:, h * 4 : h * 4 + 4], c)
                for c in model.inner.o_proj.weight.split(4, dim=1)
            ):
                w[:, h] = 0
    torch.testing.assert_close(model(x), reference(x))
    assert kept


@pytest.mark.parametrize("glu", [False, True])
def test_channel_pruning_equals_zeroing_the_removed_channels(glu):
    torch.manual_seed(0)
    mixer = GLU("swiglu", dim=8, hidden_dim=12) if glu else MLP(dim=8, hidden_dim=12)
    reference = GLU("swiglu", dim=8, hidden_dim=12) if glu else MLP(dim=8, hidden_dim=12)
    reference.load_state_dict(mixer.state_dict())
    x = torch.randn(32, 8)
    transform, _ = create_transform({"name": "prune_channels", "options": {"amount": 0.25}})
    model, facts = transform.apply(Wrap(mixer), _context(x))
    assert model.inner.down.in_features == 9 and facts["channels_removed"] == 3
    biases = 0 if glu or model.inner.up.bias is None else 3
    assert facts["params_removed"] == 3 * 8 * (3 if glu else 2) + biases
    kept = [
        any(torch.equal(reference.down.weight[:, j], c) for c in model.inner.down.weight.T) for j in range(12)
    ]
    with torch.no_grad():
        reference.down.weight[:, [j for j in range(12) if not kept[j]]] = 0
    torch.testing.assert_close(model(x), reference(x))


def test_cubic_schedule_of_zhu_and_gupta():
    assert cubic_sparsity(0, 0.8, 0.0, 0, 100) == 0.0
    assert cubic_sparsity(50, 0.8, 0.0, 0, 100) == pytest.approx(0.8 * (1 - 0.5**3))
    assert cubic_sparsity(100, 0.8, 0.0, 0, 100) == pytest.approx(0.8)
    assert cubic_sparsity(500, 0.8, 0.0, 0, 100) == pytest.approx(0.8)
    assert cubic_sparsity(5, 0.8, 0.1, 10, 100) == 0.0  # before the start


def test_gradual_pruning_raises_sparsity_with_the_training_steps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 4))
    transform, _ = create_transform(
        {"name": "prune_gradual", "options": {"final": 0.75, "end_step": 8, "frequency": 1}, "when": "before"}
    )
    model, _ = transform.apply(model)
    seen = []
    for step in range(12):
        model(torch.randn(2, 32))
        seen.append(sparsity(model))
        if step < 8:
            assert seen[-1] == pytest.approx(transform.sparsity_at(step), abs=0.01)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(0.75, abs=0.01)
    model.eval()
    model(torch.randn(2, 32))  # evaluation does not advance the schedule
    assert int(model.gradual_prune_step) == 12
    model = transform.finalize(model)
    assert sparsity(model) == pytest.approx(0.75, abs=0.01) and "gradual_prune_step" not in model.state_dict()


def test_gradual_pruning_through_the_trainer():
    config = from_dict(
        RunConfig,
        {
            "task": {"name": "synthetic_table", "options": {"num_examples": 200}},
            "model": {"name": "tabular", "dim": 16, "depth": 1},
            "train": {"epochs": 2, "batch_size": 32, "lr": 3e-3},
            "transforms": [
                {
                    "name": "prune_gradual",
                    "options": {"final": 0.6, "end_step": 10, "frequency": 2},
                    "when": "before",
                }
            ],
        },
    )
    trainer = Trainer(config, progress=False)
    result = trainer.fit()
    assert result.status == "finished" and sparsity(trainer.model) == pytest.approx(0.6, abs=0.02)
