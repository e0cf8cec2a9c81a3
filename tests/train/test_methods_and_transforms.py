"""Training methods (trainer hooks) and transforms (model -> model), through the trainer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mixerlab.errors import ConfigError
from mixerlab.registry import METHODS, TRANSFORMS
from mixerlab.train import RunConfig, Trainer, from_dict
from mixerlab.train.methods import GradientNoise, TrainingMethod
from mixerlab.train.transforms import create_transform, sparsity


def table_config(**extra) -> RunConfig:
    return from_dict(
        RunConfig,
        {
            "task": {"name": "synthetic_table", "options": {"num_examples": 200}},
            "model": {"name": "tabular", "dim": 16, "depth": 1},
            "train": {"epochs": 2, "batch_size": 32, "lr": 3e-3},
            **extra,
        },
    )


@pytest.mark.parametrize("name", METHODS.list())
def test_every_method_is_documented_and_trains(name):
    entry = METHODS.entry(name)
    assert entry.paper
    config = table_config(method={"name": name, "options": dict(entry.test_kwargs)})
    result = Trainer(config, progress=False).fit()
    assert result.status == "finished" and result.steps > 0 and result.metrics is not None


def test_gradient_noise_has_the_annealed_variance():
    method = GradientNoise(eta=4.0, gamma=0.55, seed=0)
    assert method.std(0) == pytest.approx(2.0) and method.std(9) == pytest.approx((4.0 / 10**0.55) ** 0.5)
    layer = nn.Linear(200, 200, bias=False)
    layer.weight.grad = torch.zeros_like(layer.weight)
    method.after_backward(layer, step=9)
    assert float(layer.weight.grad.std()) == pytest.approx(method.std(9), rel=0.02)
    assert float(layer.weight.grad.mean()) == pytest.approx(0.0, abs=0.01)


def test_a_method_hook_changes_how_the_model_learns():
    calls = []

    class Frozen(TrainingMethod):
        """Drops every gradient after backward: the weights must not move."""

        def after_backward(self, model, step):
            calls.append(step)
            for p in model.parameters():
                p.grad = None

    trainer = Trainer(table_config(), progress=False)
    trainer.method = Frozen()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    assert calls == list(range(len(calls))) and len(calls) > 0
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


class Killed(Exception):
    pass


def test_gradient_noise_resumes_with_the_same_noise(tmp_path):
    config = table_config(method={"name": "gradient_noise", "options": {"eta": 0.1}})
    whole = Trainer(config, progress=False)
    whole.fit()

    def kill_after_first_epoch(record):
        if record["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        Trainer(
            config, checkpoint_path=tmp_path / "c.pt", progress=False, on_epoch=kill_after_first_epoch
        ).fit()
    resumed = Trainer(config, checkpoint_path=tmp_path / "c.pt", progress=False)
    resumed.fit()
    # The noise generator's state travels in the checkpoint: the resumed run draws the same noise.
    for (k, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("name", TRANSFORMS.list())
def test_every_transform_is_documented(name):
    entry = TRANSFORMS.entry(name)
    assert entry.paper and entry.arxiv and entry.arxiv in (entry.builder.__doc__ or "").splitlines()[0]


def test_magnitude_pruning_zeroes_the_smallest_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 20), nn.Linear(20, 20))
    magnitudes = torch.cat([m.weight.detach().abs().flatten() for m in model])
    threshold = magnitudes.kthvalue(400).values  # half of the 800 weights
    transform, when = create_transform({"name": "prune_magnitude", "options": {"amount": 0.5}})
    model, facts = transform.apply(model)
    model = transform.finalize(model)
    assert when == "after" and facts["sparsity"] == pytest.approx(0.5)
    for m in model:
        assert ((m.weight == 0) == (m.weight.abs() <= threshold)).all() or (m.weight.abs() > 0).sum() > 0
    assert sparsity(model) == pytest.approx(0.5) and not hasattr(model[0], "weight_orig")


def test_pruning_before_training_keeps_its_zeros_through_training():
    config = table_config(
        transforms=[{"name": "prune_magnitude", "options": {"amount": 0.6}, "when": "before"}]
    )
    trainer = Trainer(config, progress=False)
    result = trainer.fit()
    assert sparsity(trainer.model) >= 0.6 - 1e-6
    assert result.transforms[0]["when"] == "before" and result.transforms[0]["sparsity"] >= 0.6 - 1e-6


def test_pruning_after_training_records_the_metric_before_it():
    config = table_config(transforms=[{"name": "prune_magnitude", "options": {"amount": 0.9}}])
    trainer = Trainer(config, progress=False)
    result = trainer.fit()
    facts = result.transforms[0]
    assert facts["when"] == "after" and facts["metric_before"] is not None
    assert sparsity(trainer.model) == pytest.approx(0.9, abs=0.01)


def test_bad_transform_and_method_options_are_clear_errors():
    with pytest.raises(ConfigError, match="amount"):
        create_transform({"name": "prune_magnitude", "options": {"amount": 1.5}})
    with pytest.raises(ConfigError, match="when"):
        create_transform({"name": "prune_magnitude", "when": "during"})
    with pytest.raises(ConfigError, match="eta"):
        Trainer(table_config(method={"name": "gradient_noise", "options": {"eta": -1}}), progress=False)


def test_a_finished_run_with_a_before_transform_loads_from_its_checkpoint(tmp_path):
    spec = {"name": "prune_magnitude", "options": {"amount": 0.5}, "when": "before"}
    config = table_config(transforms=[spec])
    first = Trainer(config, checkpoint_path=tmp_path / "c.pt", progress=False)
    result = first.fit()
    again = Trainer(config, checkpoint_path=tmp_path / "c.pt", progress=False)
    loaded = again.fit()  # the finished run is read back, not trained again
    assert loaded.steps == result.steps and loaded.metrics.value == result.metrics.value
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
