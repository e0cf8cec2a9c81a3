"""Pointer tasks (``sort``, ``convex_hull``): the answer is a sequence of indices into the input.

Shapes: ``inputs = {"points": [N, n, C], "teacher": [N, steps]}`` float points and, in the
training set only, the target pointers for teacher forcing (evaluation sets hold ``points`` alone,
so a model is scored on its own decoding); ``targets: [N, steps]`` int64 input indices, ``-100``
where nothing is scored. Kind ``classify`` with one class per step over the input positions,
scored by ``cross_entropy`` (see :mod:`mixerlab.models.pointer`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mixerlab.errors import check, check_positive_int
from mixerlab.registry import TASKS
from mixerlab.tasks.base import IGNORE, Task, TaskData, check_int_list, generator


class PointerTask(Task):
    """Points drawn uniformly in the unit cube of ``in_features`` dimensions, trained at
    ``num_points`` and evaluated at each of ``test_num_points`` (the paper's longer-than-trained
    test); subclasses give the target pointers."""

    kind = "classify"
    owner: str
    in_features: int

    def __init__(self, num_points: int, test_num_points: Any, num_train: int, num_test: int) -> None:
        check_positive_int(self.owner, "num_points", num_points)
        check_positive_int(self.owner, "num_train", num_train)
        check_positive_int(self.owner, "num_test", num_test)
        self.num_points, self.num_train, self.num_test = num_points, num_train, num_test
        self.test_num_points = check_int_list(self.owner, "test_num_points", test_num_points or num_points)
        self.vocab_size = 0  # float inputs: no vocabulary

    def model_io(self) -> dict[str, Any]:
        return {"in_features": self.in_features}

    @property
    def train_seq_len(self) -> int:
        return self.num_points

    @property
    def eval_seq_lens(self) -> list[int]:
        return list(self.test_num_points)

    def pointers(self, points: Tensor) -> Tensor:
        """``[N, n, C]`` -> the target indices ``[N, steps]`` (``-100`` where unscored)."""
        raise NotImplementedError

    def _examples(self, num: int, n: int, g: torch.Generator, teacher: bool) -> TaskData:
        points = torch.rand(num, n, self.in_features, generator=g)
        targets = self.pointers(points)
        inputs = {"points": points}
        if teacher:
            inputs["teacher"] = targets.masked_fill(targets == IGNORE, n)  # past the end: "stop"
        slices = {"num_points": torch.full((num,), n)}
        return TaskData(inputs, targets, slices)

    def train_data(self, seed: int) -> TaskData:
        return self._examples(self.num_train, self.num_points, generator(seed, self.owner, "train"), True)

    def eval_data(self, seed: int) -> list[TaskData]:
        return [
            self._examples(self.num_test, n, generator(seed, self.owner, "test", n), False)
            for n in self.test_num_points
        ]


@TASKS.register(
    "sort",
    paper="Pointer Networks (sorting, as in Order Matters: Sequence to sequence for sets)",
    arxiv="1506.03134",
    test_kwargs={"num_points": 5, "num_train": 32, "num_test": 8},
    meta={"metric": "accuracy", "slices": "num_points"},
)
class Sort(PointerTask):
    """Sort ``num_points`` uniform numbers (Pointer Networks, arXiv:1506.03134): the targets are
    the indices of the inputs in increasing order (``argsort``); ``points: [N, n, 1]``."""

    owner = "sort"
    in_features = 1

    def __init__(
        self,
        num_points: int = 5,
        test_num_points: int | list[int] | None = None,
        num_train: int = 10000,
        num_test: int = 1000,
    ) -> None:
        super().__init__(num_points, test_num_points, num_train, num_test)

    def pointers(self, points: Tensor) -> Tensor:
        return points[..., 0].argsort(dim=1)


def hull_indices(points: Tensor) -> list[int]:
    """The convex hull of ``points: [n, 2]``: vertex indices counter-clockwise from the lowest index
    (Andrew's monotone chain; collinear points on an edge are not vertices)."""
    order = sorted(range(len(points)), key=lambda i: (float(points[i, 0]), float(points[i, 1])))

    def cross(o: int, a: int, b: int) -> float:
        return float(
            (points[a, 0] - points[o, 0]) * (points[b, 1] - points[o, 1])
            - (points[a, 1] - points[o, 1]) * (points[b, 0] - points[o, 0])
        )

    def chain(indices: list[int]) -> list[int]:
        out: list[int] = []
        for i in indices:
            while len(out) >= 2 and cross(out[-2], out[-1], i) <= 0:
                out.pop()
            out.append(i)
        return out[:-1]

    hull = chain(order) + chain(order[::-1])  # counter-clockwise
    first = hull.index(min(hull))
    return hull[first:] + hull[:first]


@TASKS.register(
    "convex_hull",
    paper="Pointer Networks (planar convex hull)",
    arxiv="1506.03134",
    test_kwargs={"num_points": 6, "num_train": 16, "num_test": 8},
    meta={"metric": "accuracy", "slices": "num_points"},
)
class ConvexHull(PointerTask):
    """Planar convex hull of ``num_points`` uniform points (Pointer Networks, arXiv:1506.03134).

    The targets are the hull's vertices counter-clockwise from the lowest input index, then the
    end token (index ``n``, the model's ``end_token``), then ``-100``: ``[N, n + 1]``.
    """

    owner = "convex_hull"
    in_features = 2

    def __init__(
        self,
        num_points: int = 10,
        test_num_points: int | list[int] | None = None,
        num_train: int = 10000,
        num_test: int = 1000,
    ) -> None:
        super().__init__(num_points, test_num_points, num_train, num_test)
        check(
            num_points >= 3, self.owner, "num_points", num_points, "expected >= 3 (a hull needs a triangle)"
        )

    def model_io(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "end_token": True}

    def pointers(self, points: Tensor) -> Tensor:
        num, n = points.shape[0], points.shape[1]
        targets = torch.full((num, n + 1), IGNORE, dtype=torch.long)
        for k in range(num):
            hull = hull_indices(points[k])
            targets[k, : len(hull)] = torch.tensor(hull)
            targets[k, len(hull)] = n
        return targets
