"""The image tasks (tasks/images.py): the generated long-range ``pathfinder`` task."""

from __future__ import annotations

from collections import deque

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.tasks.images import DOT_LEVEL, PATH_LEVEL


def connected(image: torch.Tensor) -> bool:
    """Whether the two dots of ``[1, S, S]`` are joined by inked cells (4-connectivity)."""
    ink = image[0] > 0
    dots = [tuple(p) for p in (image[0] == DOT_LEVEL).nonzero().tolist()]
    assert len(dots) == 2
    seen, todo = {dots[0]}, deque([dots[0]])
    while todo:
        y, x = todo.popleft()
        for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            n = (y + dy, x + dx)
            if 0 <= n[0] < ink.shape[0] and 0 <= n[1] < ink.shape[1] and ink[n] and n not in seen:
                seen.add(n)
                todo.append(n)
    return dots[1] in seen


def test_labels_say_whether_the_dots_are_connected():
    task = mixerlab.create_task("pathfinder", image_size=10, num_train=60, num_eval=10)
    data = task.train_data(0)
    assert data.inputs.shape == (60, 1, 10, 10) and data.inputs.dtype == torch.float32
    assert set(data.inputs.unique().tolist()) == {0.0, PATH_LEVEL, DOT_LEVEL}
    for image, label in zip(data.inputs, data.targets.tolist()):
        assert connected(image) == bool(label)
    assert data.targets.float().mean() == 0.5  # balanced


def test_classes_have_the_same_ink():
    # One path of L or two of L/2: counting path cells cannot tell the classes apart.
    data = mixerlab.create_task("pathfinder", image_size=12, num_train=40, num_eval=10).train_data(0)
    ink = (data.inputs > 0).flatten(1).sum(1)
    assert ink[data.targets == 1].float().mean() == ink[data.targets == 0].float().mean()


def test_deterministic_from_the_seed_and_distinct_across_splits():
    task = mixerlab.create_task("pathfinder", image_size=8, num_train=20, num_eval=20)
    a, b = task.train_data(3), task.train_data(3)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(task.train_data(4).inputs, a.inputs)
    assert not torch.equal(task.eval_data(3)[0].inputs, a.inputs)
    assert not torch.equal(task.val_data(3).inputs, task.eval_data(3)[0].inputs)


def test_difficulty_grows_with_the_image_size():
    def mean_dot_distance(size: int) -> float:
        data = mixerlab.create_task("pathfinder", image_size=size, num_train=40, num_eval=4).train_data(0)
        positives = data.inputs[data.targets == 1]
        # Path length between the dots of a connected pair: the inked cells minus the distractor.
        return float((positives > 0).flatten(1).sum(1).float().mean())

    assert mean_dot_distance(16) > 1.8 * mean_dot_distance(8)


def test_model_io_and_a_model_runs_on_it():
    task = mixerlab.create_task("pathfinder", image_size=8, num_train=8, num_eval=4)
    assert task.kind == "classify" and task.model_io() == {"image_size": 8, "in_chans": 1, "num_classes": 2}
    model = mixerlab.create_model("image_classifier", **task.model_io(), dim=8, depth=1, mixer="gnconv")
    assert model(task.train_data(0).inputs)[0].shape == (8, 2)


def test_bad_options_are_clear_errors():
    with pytest.raises(ConfigError, match="image_size=4"):
        mixerlab.create_task("pathfinder", image_size=4)
    with pytest.raises(ConfigError, match="distractors=5"):
        mixerlab.create_task("pathfinder", image_size=8, distractors=5)
    with pytest.raises(ConfigError, match="num_train"):
        mixerlab.create_task("pathfinder", num_train=0)
