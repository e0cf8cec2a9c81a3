"""Low-rank transforms: the rank per layer by the energy threshold, the best rank-r approximation,
and Maestro's ordered factors (exact at full rank, nested prefixes under ordered dropout)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mixerlab.layers.aux_loss import collect_aux_losses
from mixerlab.train.transforms import create_transform
from mixerlab.train.transforms.lowrank import LowRankLinear, OrderedLowRankLinear, energy_rank


def layer_with_spectrum(singular_values: list[float], out: int = 40, inp: int = 30) -> nn.Linear:
    torch.manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(out, len(singular_values)))
    v, _ = torch.linalg.qr(torch.randn(inp, len(singular_values)))
    layer = nn.Linear(inp, out, bias=False)
    with torch.no_grad():
        layer.weight.copy_(u @ torch.diag(torch.tensor(singular_values)) @ v.T)
    return layer


def test_energy_rank_is_the_smallest_rank_keeping_the_energy():
    s = torch.tensor([3.0, 2.0, 1.0, 0.5])  # energies 9, 4, 1, 0.25 of 14.25
    assert energy_rank(s, 0.6) == 1 and energy_rank(s, 0.9) == 2 and energy_rank(s, 0.98) == 3
    assert energy_rank(s, 1.0) == 4


def test_svd_picks_each_layers_rank_by_energy_and_is_the_best_rank_r_approximation():
    sharp = layer_with_spectrum([10.0, 5.0] + [0.1] * 8)  # two directions hold 99.2%
    flat = layer_with_spectrum([1.0] * 8, out=8, inp=8)  # every direction matters: left dense
    model = nn.Sequential(sharp, nn.ReLU(), flat)
    original = sharp.weight.detach().clone()
    transform, _ = create_transform({"name": "svd", "options": {"energy": 0.95}})
    model, facts = transform.apply(model)
    assert isinstance(model[0], LowRankLinear) and model[0].rank == 2 and type(model[2]) is nn.Linear
    assert facts["ranks"] == {"0": 2} and facts["params_removed"] == 40 * 30 - 2 * (40 + 30)
    u, s, vh = torch.linalg.svd(original.double())
    best = (u[:, :2] * s[:2]) @ vh[:2]
    torch.testing.assert_close(
        (model[0].second.weight @ model[0].first.weight).double(), best, rtol=1e-5, atol=1e-5
    )


def test_maestro_factors_are_exact_at_full_rank_and_nested_under_ordered_dropout():
    linear = layer_with_spectrum([4.0, 2.0, 1.0, 0.5, 0.25], out=12, inp=10)
    layer = OrderedLowRankLinear(linear, drop_prob=1.0, group_lasso=0.1)
    x = torch.randn(6, 10)
    layer.eval()
    torch.testing.assert_close(layer(x), linear(x), rtol=1e-4, atol=1e-5)
    layer.train()
    torch.manual_seed(3)
    with collect_aux_losses() as aux:
        y = layer(x)
    torch.manual_seed(3)
    assert float(torch.rand(())) < 1.0
    b = int(torch.randint(1, layer.rank + 1, ()))
    torch.testing.assert_close(y, x @ (layer.u[:, :b] @ layer.v[:b]).T)
    assert "maestro_group_lasso" in aux.by_name()


def test_maestro_truncates_each_layer_by_energy_in_the_learned_order():
    model = nn.Sequential(layer_with_spectrum([10.0, 5.0] + [0.1] * 8), nn.ReLU())
    transform, _ = create_transform({"name": "maestro", "options": {"energy": 0.95}, "when": "before"})
    model, _ = transform.apply(model)
    assert isinstance(model[0], OrderedLowRankLinear) and model[0].rank == 30
    model = transform.finalize(model)
    assert model[0].rank == 2 and transform.ranks == {"0": 2}
    assert transform.finalize(model)[0].rank == 2  # a second finalize changes nothing


def test_maestro_keeps_a_layer_dense_when_its_factors_would_be_larger():
    linear = layer_with_spectrum([1.0] * 8, out=8, inp=8)
    transform, _ = create_transform({"name": "maestro", "options": {"energy": 0.99}, "when": "before"})
    model, _ = transform.apply(nn.Sequential(linear))
    model = transform.finalize(model)
    assert type(model[0]) is nn.Linear and transform.ranks == {"0": 8}
    torch.testing.assert_close(model[0].weight, linear.weight, rtol=1e-4, atol=1e-5)


def test_bad_low_rank_options_are_clear_errors():
    from mixerlab.errors import ConfigError

    with pytest.raises(ConfigError, match="energy"):
        create_transform({"name": "svd", "options": {"energy": 0}})
    with pytest.raises(ConfigError, match="drop_prob"):
        create_transform({"name": "maestro", "options": {"drop_prob": 2}})
