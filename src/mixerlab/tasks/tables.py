"""Small real tables (scikit-learn's bundled datasets) and one generated table with categorical fields.

Shapes (``F`` numerical features, ``C`` categorical fields):

- ``inputs = {"numerical": [N, F] float32, "categorical": [N, C] int64}`` (no ``"categorical"`` key
  when a table has none); numerical features are standardised with the TRAIN split's mean and std;
- classify: ``targets: [N]`` int64, slices ``{"label": [N]}``;
- regress: ``targets: [N]`` float32, standardised with the train split's mean and std, so the MSE is
  in units of the target's variance (predicting the train mean scores about 1).

Every table is split into train / validation / test by one permutation drawn from the data seed
(``val_fraction`` and ``test_fraction`` of the rows held out); no row is in two splits. The tables
ship inside scikit-learn, so this runs offline; scikit-learn is imported only when data is made.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import torch
from torch import Tensor

from mixerlab.errors import check, check_positive_int
from mixerlab.registry import TASKS
from mixerlab.tasks.base import Task, TaskData, generator

# The split every table and image task uses unless told otherwise: 70 / 15 / 15.
VAL_FRACTION = TEST_FRACTION = 0.15
SPLITS = ("train", "val", "test")


def check_fractions(owner: str, val_fraction: Any, test_fraction: Any) -> None:
    """Both fractions in ``(0, 1)`` and together below 1, so that every split has rows."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        check(
            isinstance(value, float | int) and not isinstance(value, bool) and 0 < value < 1,
            owner,
            name,
            value,
            "expected a fraction in (0, 1)",
        )
    check(
        val_fraction + test_fraction < 1,
        owner,
        "test_fraction",
        test_fraction,
        f"expected val_fraction + test_fraction < 1 (val_fraction={val_fraction})",
    )


def shuffled_split(
    num: int, seed: int, owner: str, val_fraction: float, test_fraction: float
) -> dict[str, Tensor]:
    """Disjoint row indices ``{"train", "val", "test"}`` from one permutation drawn from ``seed``."""
    order = torch.randperm(num, generator=generator(seed, owner, "split"))
    num_test = max(1, round(test_fraction * num))
    num_val = max(1, round(val_fraction * num))
    # Sorted so that a split lists its rows in the table's order, whatever the permutation.
    return {
        "test": order[:num_test].sort().values,
        "val": order[num_test : num_test + num_val].sort().values,
        "train": order[num_test + num_val :].sort().values,
    }


def _standardise(values: Tensor, train: Tensor) -> Tensor:
    """``(values - mean) / std`` with the statistics of the ``train`` rows (per column)."""
    mean, std = train.mean(0), train.std(0)
    # A column constant on the train rows carries no information there; keep it finite.
    return (values - mean) / torch.where(std > 0, std, torch.ones_like(std))


class TableTask(Task):
    """A table split by rows; subclasses set ``owner``, ``kind`` and implement :meth:`_table`.

    ``_table(seed)`` returns the whole table as ``numerical [N, F]`` float64, ``categorical
    [N, C]`` int64 or ``None``, and ``targets [N]`` (int64 labels or float64 values).
    """

    owner: ClassVar[str]
    kind: ClassVar[str] = "classify"
    objective: ClassVar[str] = "cross_entropy"
    num_features: int
    cardinalities: list[int]
    num_classes: int

    def __init__(self, val_fraction: float = VAL_FRACTION, test_fraction: float = TEST_FRACTION) -> None:
        check_fractions(self.owner, val_fraction, test_fraction)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    def _table(self, seed: int) -> tuple[Tensor, Tensor | None, Tensor]:
        raise NotImplementedError

    def model_io(self) -> dict[str, Any]:
        io: dict[str, Any] = {"num_features": self.num_features, "cardinalities": list(self.cardinalities)}
        if self.kind == "classify":
            io["num_classes"] = self.num_classes
        else:
            io["num_outputs"] = 1
        return io

    @property
    def train_seq_len(self) -> int:
        # One token per feature, numerical and categorical alike.
        return self.num_features + len(self.cardinalities)

    def _split(self, seed: int, split: str) -> TaskData:
        numerical, categorical, targets = self._table(seed)
        rows = shuffled_split(len(targets), seed, self.owner, self.val_fraction, self.test_fraction)
        idx, train = rows[split], rows["train"]
        inputs = {"numerical": _standardise(numerical[idx], numerical[train]).float()}
        if categorical is not None:
            inputs["categorical"] = categorical[idx]
        if self.kind == "classify":
            return TaskData(inputs, targets[idx], {"label": targets[idx]})
        return TaskData(inputs, _standardise(targets[idx], targets[train]).float())

    def train_data(self, seed: int) -> TaskData:
        return self._split(seed, "train")

    def val_data(self, seed: int) -> TaskData:
        return self._split(seed, "val")

    def eval_data(self, seed: int) -> list[TaskData]:
        return [self._split(seed, "test")]


@functools.cache
def load_sklearn_table(name: str) -> tuple[Tensor, Tensor]:
    """``features: [N, F]`` float64 and ``targets: [N]`` of ``sklearn.datasets.load_<name>``."""
    try:
        from sklearn import datasets
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"the {name} table needs scikit-learn: pip install 'mixerlab[bench]'") from err
    bunch = getattr(datasets, f"load_{name}")()
    features = torch.as_tensor(bunch.data, dtype=torch.float64)
    target_dtype = torch.float64 if name == "diabetes" else torch.long
    return features, torch.as_tensor(bunch.target, dtype=target_dtype)


class SklearnTable(TableTask):
    """A numerical table bundled with scikit-learn (no categorical fields)."""

    shape: ClassVar[tuple[int, int]]  # (features, classes; 0 for a regression)

    def __init__(self, val_fraction: float = VAL_FRACTION, test_fraction: float = TEST_FRACTION) -> None:
        super().__init__(val_fraction, test_fraction)
        # Sizes are known without loading the data, so model_io() stays cheap.
        self.num_features, self.cardinalities = self.shape[0], []
        self.num_classes = self.shape[1]

    def _table(self, seed: int) -> tuple[Tensor, Tensor | None, Tensor]:
        features, targets = load_sklearn_table(self.owner)
        return features, None, targets


@TASKS.register(
    "breast_cancer",
    paper="Breast Cancer Wisconsin (Diagnostic), Street, Wolberg & Mangasarian 1993 (UCI)",
    test_kwargs={},
    meta={"metric": "accuracy", "slices": "label", "rows": 569},
)
class BreastCancer(SklearnTable):
    """Breast Cancer Wisconsin (Diagnostic), Street et al. 1993 (UCI): 569 rows, 30 features, 2 classes."""

    owner = "breast_cancer"
    shape = (30, 2)


@TASKS.register(
    "wine",
    paper="Wine recognition, Forina et al. (UCI); classic in Aeberhard et al. 1992",
    test_kwargs={},
    meta={"metric": "accuracy", "slices": "label", "rows": 178},
)
class Wine(SklearnTable):
    """Wine recognition, Forina et al. (UCI): 178 rows, 13 chemical features, 3 cultivars."""

    owner = "wine"
    shape = (13, 3)


@TASKS.register(
    "diabetes",
    paper="Diabetes progression, Efron, Hastie, Johnstone & Tibshirani 2004 (Least Angle Regression)",
    test_kwargs={},
    meta={"metric": "mse", "rows": 442},
)
class Diabetes(SklearnTable):
    """Diabetes progression, Efron et al. 2004 (Least Angle Regression): 442 rows, 10 features.

    The target (disease progression after one year) is standardised with the train split's
    statistics: the MSE is in units of its variance.
    """

    owner = "diabetes"
    kind = "regress"
    objective = "mse"
    shape = (10, 0)


@TASKS.register(
    "synthetic_table",
    paper="Generated table with numerical and categorical fields and a known labelling rule",
    test_kwargs={"num_examples": 200},
    meta={"metric": "accuracy", "slices": "label"},
)
class SyntheticTable(TableTask):
    """A generated table whose label needs both a numerical and a categorical field (no source paper).

    Rows have ``num_numerical`` standard-normal features ``x`` and ``num_categorical`` fields ``c``
    uniform over ``0..cardinality-1``. The rule:

        label = 1  if  x[0] + x[1] + (+1 if c[0] is odd else -1) > 0,  else 0

    so a model that ignores the categorical path is capped well below 100% accuracy; the other
    fields are distractors. The table and its split are both drawn from the data seed.
    """

    owner = "synthetic_table"

    def __init__(
        self,
        num_examples: int = 2000,
        num_numerical: int = 4,
        num_categorical: int = 2,
        cardinality: int = 6,
        val_fraction: float = VAL_FRACTION,
        test_fraction: float = TEST_FRACTION,
    ) -> None:
        super().__init__(val_fraction, test_fraction)
        check_positive_int(self.owner, "num_examples", num_examples)
        check(num_examples >= 20, self.owner, "num_examples", num_examples, "expected >= 20 rows")
        for name, value, minimum in (
            ("num_numerical", num_numerical, 2),
            ("num_categorical", num_categorical, 1),
            ("cardinality", cardinality, 2),
        ):
            check(
                isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
                self.owner,
                name,
                value,
                f"expected an integer >= {minimum} (the rule reads x[0], x[1] and c[0])",
            )
        self.num_examples = num_examples
        self.num_features = num_numerical
        self.cardinalities = [cardinality] * num_categorical
        self.num_classes = 2

    def _table(self, seed: int) -> tuple[Tensor, Tensor | None, Tensor]:
        g = generator(seed, self.owner, "table")
        x = torch.randn(self.num_examples, self.num_features, generator=g, dtype=torch.float64)
        c = torch.randint(self.cardinalities[0], (self.num_examples, len(self.cardinalities)), generator=g)
        offset = 2.0 * (c[:, 0] % 2) - 1.0  # +1 for an odd category, -1 for an even one
        label = (x[:, 0] + x[:, 1] + offset > 0).long()
        return x, c, label
