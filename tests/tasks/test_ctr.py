"""The generated click-through task ``ctr``: deterministic from its seed, labels from the history."""

from __future__ import annotations

import pytest
import torch

from mixerlab.errors import ConfigError
from mixerlab.tasks import create_task
from mixerlab.train import RunConfig, Trainer, from_dict


def small(**options):
    return create_task("ctr", **{"num_examples": 300, **options})


def test_same_seed_same_data_other_seed_other_data_and_disjoint_splits():
    task = small()
    a, b, c = task.train_data(0), task.train_data(0), task.train_data(1)
    assert torch.equal(a.inputs["history"], b.inputs["history"]) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs["history"], c.inputs["history"])
    sizes = [len(task.train_data(0)), len(task.val_data(0)), len(task.eval_data(0)[0])]
    assert sum(sizes) == 300 and min(sizes) > 0
    assert task.kind == "classify" and task.model_io() == {"vocab_size": 61, "num_classes": 2}


def test_histories_are_padded_after_their_end_and_labels_follow_the_relevant_count():
    task = small(min_relevant=2)
    data = task.train_data(0)
    history, candidate = data.inputs["history"], data.inputs["candidate"]
    assert history.shape[1] == task.history_len and candidate.min() >= 1 and candidate.max() <= task.num_items
    real = history != 0
    assert torch.all(real.sum(1) >= task.min_history)
    assert torch.all(real[:, :-1] | ~real[:, 1:])  # no item after a padding position
    same = (task.group_of(history) == task.group_of(candidate)[:, None]).sum(1)
    assert torch.equal(data.targets, (same >= 2).long())
    assert 0.2 < data.targets.float().mean() < 0.8  # both classes are common


def test_bad_options_are_errors():
    with pytest.raises(ConfigError, match="min_history"):
        small(min_history=20)
    with pytest.raises(ConfigError, match="num_groups"):
        small(num_groups=1)


def test_din_trains_on_it():
    config = from_dict(
        RunConfig,
        {
            "task": {"name": "ctr", "options": {"num_examples": 200}},
            "model": {"name": "din", "dim": 8, "mixer": "none", "channel_mixer": "none", "norm": "none"},
            "train": {"epochs": 1, "batch_size": 32},
        },
    )
    result = Trainer(config, progress=False).fit()
    assert result.status == "finished" and 0 <= result.metrics.value <= 1
