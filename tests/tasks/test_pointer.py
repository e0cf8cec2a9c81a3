"""sort and convex_hull: targets are indices into the input, deterministic from the seed."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.tasks.base import IGNORE
from mixerlab.tasks.pointer import hull_indices


def test_sort_targets_put_the_points_in_increasing_order():
    task = mixerlab.create_task("sort", num_points=7, test_num_points=[7, 11], num_train=50, num_test=9)
    data = task.train_data(0)
    values = data.inputs["points"][..., 0]
    ordered = values.gather(1, data.targets)
    assert (ordered[:, 1:] > ordered[:, :-1]).all()
    assert torch.equal(data.inputs["teacher"], data.targets) and task.model_io() == {"in_features": 1}
    tests = task.eval_data(0)
    assert [d.inputs["points"].shape[1] for d in tests] == [7, 11]
    assert all(set(d.inputs) == {"points"} for d in tests)  # no teacher at evaluation
    assert torch.equal(task.train_data(0).inputs["points"], data.inputs["points"])
    assert not torch.equal(task.train_data(1).inputs["points"], data.inputs["points"])


def test_hull_of_a_square_with_an_inner_point_is_its_corners_counter_clockwise():
    points = torch.tensor([[0.5, 0.5], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.5, 0.0]])
    # Counter-clockwise from the lowest vertex index: 1 (top right) -> 2 (top left) -> 3 -> 4.
    assert hull_indices(points) == [1, 2, 3, 4]


def test_convex_hull_targets_are_vertices_then_the_end_token():
    task = mixerlab.create_task("convex_hull", num_points=8, num_train=30)
    data = task.train_data(0)
    assert data.targets.shape == (30, 9) and task.model_io()["end_token"]
    for k in range(30):
        row = data.targets[k]
        size = int((row != IGNORE).sum()) - 1
        assert row[size] == 8 and size >= 3 and row[0] == row[:size].min()
        hull = data.inputs["points"][k, row[:size]]
        # Every turn along the hull is counter-clockwise (positive cross product).
        a, b, c = hull, hull.roll(-1, 0), hull.roll(-2, 0)
        turn = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        assert (turn > 0).all()


def test_pointer_tasks_reject_bad_sizes():
    with pytest.raises(ConfigError, match="num_points"):
        mixerlab.create_task("convex_hull", num_points=2)
    with pytest.raises(ConfigError, match="test_num_points"):
        mixerlab.create_task("sort", test_num_points=[0])
