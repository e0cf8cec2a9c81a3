"""Trainer: reproducible on CPU, resumes a killed run exactly, stops on NaN, early stop, aux losses."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from mixerlab.errors import ConfigError
from mixerlab.layers.aux_loss import report_aux_loss
from mixerlab.train import RunConfig, Trainer, from_dict, to_dict
from mixerlab.train.config import apply_overrides, parse_assignments
from mixerlab.train.schedules import warmup_cosine


def tiny_config(**train) -> RunConfig:
    return from_dict(
        RunConfig,
        {
            "task": {
                "name": "mqar",
                "options": {
                    "vocab_size": 16,
                    "seq_len": 16,
                    "num_kv_pairs": [2],
                    "num_train": 96,
                    "num_test": 16,
                },
            },
            "model": {"dim": 16, "depth": 1, "mixer": {"name": "attention", "num_heads": 2}},
            "train": {"epochs": 3, "batch_size": 32, "lr": 3e-3, **train},
        },
    )


def test_config_round_trip_and_unknown_keys():
    config = tiny_config()
    again = from_dict(RunConfig, to_dict(config))
    assert again == config and again.key() == config.key()
    with pytest.raises(ConfigError, match="epochz"):
        from_dict(RunConfig, {"train": {"epochz": 3}})
    with pytest.raises(ConfigError, match="lr"):
        from_dict(RunConfig, {"train": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="colour"):
        from_dict(RunConfig, {"colour": "red"})
    data = apply_overrides(
        to_dict(config), parse_assignments(["train.lr=1e-2", "task.options.num_kv_pairs=[2, 3]"])
    )
    changed = from_dict(RunConfig, data)
    assert changed.train.lr == 1e-2 and changed.task.options["num_kv_pairs"] == [2, 3]
    assert changed.key() != config.key()


def test_warmup_cosine_schedule():
    values = [warmup_cosine(s, 100, 10, 0.1) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(values[10:]))
    assert warmup_cosine(100, 100, 10, 0.1) == pytest.approx(0.1)


def test_training_is_reproducible_on_cpu():
    a, b = Trainer(tiny_config(), progress=False), Trainer(tiny_config(), progress=False)
    ra, rb = a.fit(), b.fit()
    assert ra.history == [dict(h) for h in rb.history]
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


class Killed(Exception):
    pass


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_like_an_uninterrupted_one(tmp_path):
    full = Trainer(tiny_config(), progress=False)
    expected = full.fit()

    def kill_after_first_epoch(record):
        if record["epoch"] == 1:
            raise Killed

    ckpt = tmp_path / "run.pt"
    with pytest.raises(Killed):
        Trainer(tiny_config(), checkpoint_path=ckpt, progress=False, on_epoch=kill_after_first_epoch).fit()
    assert ckpt.exists()
    resumed = Trainer(tiny_config(), checkpoint_path=ckpt, progress=False)
    result = resumed.fit()
    assert result.status == "finished" and result.epochs == 3 and result.steps == expected.steps
    assert [h["loss"] for h in result.history] == [h["loss"] for h in expected.history]
    for pa, pb in zip(resumed.model.parameters(), full.model.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    # A finished checkpoint returns the stored result without training again.
    again = Trainer(tiny_config(), checkpoint_path=ckpt, progress=False).fit()
    assert again.steps == result.steps and again.metrics.value == result.metrics.value
    # A different config does not pick up this checkpoint.
    other = Trainer(tiny_config(lr=1e-3), checkpoint_path=ckpt, progress=False)
    assert other.fit().history[0]["loss"] != result.history[0]["loss"]


def test_nan_loss_stops_the_run_with_a_message():
    trainer = Trainer(tiny_config(), progress=False)
    with torch.no_grad():
        trainer.model.stem.weight[0, 0] = float("nan")
        trainer.model.stem.weight.fill_(float("nan"))
    result = trainer.fit()
    assert result.status == "diverged" and "loss became nan" in result.message
    assert result.steps == 0


def test_early_stop_at_target_metric():
    result = Trainer(tiny_config(target_metric=0.0), progress=False).fit()
    assert result.status == "early_stopped" and result.epochs == 1 and "target" in result.message


def test_auxiliary_losses_are_added_to_the_loss():
    plain = Trainer(tiny_config(epochs=1), progress=False)
    base = plain.fit().history[0]["loss"]
    trainer = Trainer(tiny_config(epochs=1), progress=False)
    forward = trainer.model.forward

    def with_aux(*args, **kwargs):
        report_aux_loss("test", torch.tensor(100.0))
        return forward(*args, **kwargs)

    trainer.model.forward = with_aux
    loss = trainer.fit().history[0]["loss"]
    assert loss == pytest.approx(base + 100.0, abs=1.0)


def test_bf16_autocast_runs():
    result = Trainer(tiny_config(epochs=1, bf16=True), progress=False).fit()
    assert math.isfinite(result.history[0]["loss"])


def test_cpu_budget_stops_the_run_and_says_so():
    result = Trainer(tiny_config(max_cpu_seconds=1e-9), progress=False).fit()
    assert result.status == "time_limit" and result.steps == 1 and result.epochs == 1
    assert "max_cpu_seconds" in result.message and result.metrics is not None


@pytest.mark.parametrize("task", ["digits", "synthetic_table", "diabetes", "elnino"])
def test_every_task_kind_trains_with_the_model_for_its_kind(task):
    from mixerlab.train.run import build_run_config

    config = build_run_config(None, {"task.name": task, "model.dim": 8, "model.depth": 1, "train.epochs": 1})
    trainer = Trainer(config, progress=False)
    result = trainer.fit()
    assert result.status == "finished" and result.metrics is not None
    assert result.metrics.name == trainer.objective.metric and math.isfinite(result.metrics.value)
    assert config.model.name == {"digits": "image_classifier", "elnino": "forecaster"}.get(task, "tabular")


def test_a_model_for_another_kind_of_task_is_a_clear_error():
    from mixerlab.train.run import build_run_config

    config = build_run_config(None, {"task.name": "digits", "model.name": "lm"})
    with pytest.raises(ConfigError, match="image_classifier"):
        Trainer(config, progress=False)
    config = build_run_config(None, {"task.name": "digits", "model.options": {"head": "lm"}})
    with pytest.raises(ConfigError, match="head"):
        Trainer(config, progress=False)


def test_evaluation_and_checkpoint_time_do_not_count_against_the_cpu_budget(monkeypatch, tmp_path):
    import mixerlab.train.trainer as trainer_module

    # A CPU clock that only evaluation and checkpointing advance: if either counted as training,
    # the 50-second budget would end the run after its first epoch.
    clock = {"now": 0.0}
    monkeypatch.setattr(trainer_module.time, "process_time", lambda: clock["now"])
    trainer = Trainer(tiny_config(max_cpu_seconds=50.0), progress=False, checkpoint_path=tmp_path / "ck")
    evaluate, save = trainer.evaluate, trainer._save

    def slow_evaluate():
        clock["now"] += 100.0
        return evaluate()

    def slow_save(*args, **kwargs):
        clock["now"] += 100.0
        return save(*args, **kwargs)

    monkeypatch.setattr(trainer, "evaluate", slow_evaluate)
    monkeypatch.setattr(trainer, "_save", slow_save)
    result = trainer.fit()
    assert result.status == "finished" and result.epochs == 3
    assert result.train_cpu_seconds == 0.0
