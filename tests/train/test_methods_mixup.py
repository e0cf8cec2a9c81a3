"""ExcelFormer's Hid-Mix and Feat-Mix (arXiv:2301.02819): the mixed rows and the mixed targets."""

from __future__ import annotations

import pytest
import torch

import mixerlab
import mixerlab.train.methods.mixup  # registers the method until the package imports it
from mixerlab.errors import ConfigError
from mixerlab.registry import METHODS
from mixerlab.train import RunConfig, Trainer, from_dict
from mixerlab.train.methods.mixup import ExcelFormerMixup, feat_mix_inputs, hid_mix_tokens, mixed_loss
from mixerlab.train.objectives import CrossEntropy, MeanSquaredError


def table(batch: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "numerical": torch.randn(batch, 3, generator=g, dtype=torch.float64),
        "categorical": torch.randint(0, 4, (batch, 2), generator=g),
    }


def test_feat_mix_takes_unkept_fields_from_the_partner_and_weighs_targets_by_importance():
    method = ExcelFormerMixup("feat_mix", beta=0.5, seed=3)
    importance = torch.tensor([4.0, 0.0, 1.0, 3.0, 2.0])
    x = table()
    mixed, mix = feat_mix_inputs(method, x, importance)
    both = torch.cat([x["numerical"], x["categorical"].double()], 1)
    got = torch.cat([mixed["numerical"], mixed["categorical"].double()], 1)
    for i in range(6):
        for j in range(5):
            source = i if mix.keep[i, j] else int(mix.partner[i])
            assert got[i, j] == both[source, j]
    share = importance / importance.sum()
    for i in range(6):
        assert mix.lam[i] == pytest.approx(float(sum(share[j] for j in range(5) if mix.keep[i, j])))
    y = torch.randn(6, dtype=torch.float64)
    target = mix.targets(y)
    for i in range(6):
        expected = mix.lam[i] * y[i] + (1 - mix.lam[i]) * y[mix.partner[i]]
        assert target[i] == pytest.approx(float(expected))


def test_hid_mix_keeps_a_share_of_dimensions_and_that_share_is_the_target_weight():
    method = ExcelFormerMixup("hid_mix", seed=1)
    tokens = torch.randn(6, 4, 10, dtype=torch.float64)
    mix = method.draw(6, 10)
    mixed = hid_mix_tokens(tokens, mix)
    for i in range(6):
        for d in range(10):
            source = i if mix.keep[i, d] else int(mix.partner[i])
            assert torch.equal(mixed[i, :, d], tokens[source, :, d])
    torch.testing.assert_close(mix.lam, mix.keep.double().mean(-1))
    assert ((mix.lam > 0) & (mix.lam < 1)).any()  # Beta(0.5, 0.5) mixes, not only copies


def test_class_targets_mix_the_two_cross_entropies():
    method = ExcelFormerMixup(seed=2)
    mix = method.draw(6, 8)
    logits = torch.randn(6, 3, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    soft = mix.soft_labels(labels, 3)
    torch.testing.assert_close(soft.sum(-1), torch.ones(6, dtype=torch.float64))
    loss = mixed_loss(logits, labels, mix, CrossEntropy())
    nll = -logits.log_softmax(-1)
    expected = torch.stack(
        [mix.lam[i] * nll[i, labels[i]] + (1 - mix.lam[i]) * nll[i, labels[mix.partner[i]]] for i in range(6)]
    ).mean()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=1e-6)
    values = torch.randn(6, dtype=torch.float64)
    torch.testing.assert_close(
        mixed_loss(values, values, mix, MeanSquaredError()),
        (values - mix.targets(values)).square().mean().float(),
    )


def test_draws_are_seeded_and_resume_from_the_method_state():
    a, b = ExcelFormerMixup(seed=5), ExcelFormerMixup(seed=5)
    first = a.draw(6, 7)
    assert torch.equal(first.keep, b.draw(6, 7).keep)
    saved = a.state_dict()
    nxt = a.draw(6, 7)
    b.load_state_dict(saved)
    again = b.draw(6, 7)
    assert torch.equal(nxt.keep, again.keep) and torch.equal(nxt.lam, again.lam)


def test_trains_excelformer_with_feat_mix_and_refuses_it_for_a_model_without_importance():
    assert "excelformer_mixup" in METHODS
    config = from_dict(
        RunConfig,
        {
            "task": {"name": "synthetic_table", "options": {"num_examples": 60}},
            "model": {
                "name": "excelformer",
                "dim": 8,
                "depth": 1,
                "mixer": "none",
                "channel_mixer": "none",
                "norm": "none",
            },
            "train": {"epochs": 1, "batch_size": 16},
            "method": {"name": "excelformer_mixup", "options": {"scheme": "feat_mix"}},
        },
    )
    assert Trainer(config, progress=False).fit().status == "finished"
    method = ExcelFormerMixup("feat_mix")
    model = mixerlab.create_model("tabular", num_features=3, cardinalities=[4, 4], num_classes=2, dim=8)
    batch = {"inputs": table(), "targets": torch.zeros(6, dtype=torch.long)}
    with pytest.raises(ConfigError, match="feat_mix"):
        method.loss(model.double(), batch, CrossEntropy(), 0)
    with pytest.raises(ConfigError, match="scheme"):
        ExcelFormerMixup("cutmix")
