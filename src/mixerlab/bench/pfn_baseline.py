"""The ``pfn`` baseline: a prior-fitted network (PFN, arXiv:2112.10510; TabPFN, arXiv:2207.01848)
predicting a table in context, registered in ``BASELINES`` beside gradient boosting.

``fit`` only stores the training rows (no gradient step, no optimiser); ``predict`` runs the
network once with those rows as its context. The network's weights come from
``scripts/train_pfn.py`` (``weights``: the saved file's path).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixerlab.bench.baselines import Baseline, feature_matrix
from mixerlab.errors import check
from mixerlab.registry import BASELINES
from mixerlab.tasks.base import Task, TaskData


@BASELINES.register(
    "pfn",
    paper="TabPFN: A Transformer That Solves Small Tabular Classification Problems in a Second",
    arxiv="2207.01848",
    summary="Prior-fitted network: classifies a table in context, trained only on synthetic tables.",
)
class PFNBaseline(Baseline):
    """A prior-fitted network (PFN, arXiv:2112.10510; TabPFN, arXiv:2207.01848) as a baseline.

    ``weights``: a file saved by ``scripts/train_pfn.py``. ``fit`` keeps ``X: [N, F]`` and the
    labels of the training split (a table's categorical fields as codes); ``predict`` returns
    ``[M, num_classes]`` log-probabilities of the network reading the training rows in context.
    ``num_parameters()`` counts the network's weights (none of them fitted to the task).
    """

    name = "pfn"
    kinds = ("classify",)

    def __init__(self, weights: str = "pfn.pt") -> None:
        check(isinstance(weights, str) and weights, self.name, "weights", weights, "expected a file path")
        self.weights = weights
        self.model = None
        self.train: tuple[Tensor, Tensor] | None = None

    def _network(self):
        if self.model is None:
            from pathlib import Path

            from mixerlab.models.pfn import load_pfn

            check(
                Path(self.weights).is_file(),
                f"baseline {self.name!r}",
                "weights",
                self.weights,
                "no such file; train one with: python scripts/train_pfn.py --out <path>",
            )
            self.model = load_pfn(self.weights)
        return self.model

    def fit(self, task: Task, train: TaskData, val: TaskData | None = None) -> None:
        self.check_kind(task)
        self._network()
        x, _ = feature_matrix(train)
        self.train = (torch.as_tensor(x, dtype=torch.float32), train.targets.long())

    def predict(self, task: Task, data: TaskData) -> Tensor:
        self.check_kind(task)
        x_train, y_train = self._fitted(self.train)
        x, _ = feature_matrix(data)
        num_classes = task.model_io()["num_classes"]
        return self._network().predict(x_train, y_train, torch.as_tensor(x, dtype=torch.float32), num_classes)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self._network().parameters())
