"""Objectives: loss and metric for each kind of target, aggregated exactly over slices."""

from __future__ import annotations

import math

import pytest
import torch

from mixerlab.errors import ConfigError
from mixerlab.registry import OBJECTIVES
from mixerlab.train.evaluate import aggregate


def test_cross_entropy_scores_classes_and_token_positions():
    ce = OBJECTIVES.create("cross_entropy")
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    num, den = ce.score(logits, torch.tensor([0, 0, 0]))
    assert num.tolist() == [1.0, 0.0, 1.0] and den.tolist() == [1.0, 1.0, 1.0]
    tokens = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
    num, den = ce.score(tokens, torch.tensor([[-100, 1]]))  # the first position is not scored
    assert num.tolist() == [1.0] and den.tolist() == [1.0]
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 0, 0]))
    torch.testing.assert_close(ce.loss(logits, torch.tensor([0, 0, 0])), expected)
    with pytest.raises(ConfigError, match="pred.shape"):
        ce.score(logits, torch.tensor([[0, 0, 0]]))


def test_bits_per_token_of_a_uniform_prediction_is_log2_of_the_classes():
    bits = OBJECTIVES.create("bits_per_token")
    num, den = bits.score(torch.zeros(2, 5, 8), torch.randint(0, 8, (2, 5)))
    assert float(num.sum() / den.sum()) == pytest.approx(3.0) and not bits.higher_is_better


@pytest.mark.parametrize("name, power", [("mse", 2), ("mae", 1)])
def test_regression_errors_average_over_every_value(name, power):
    obj = OBJECTIVES.create(name)
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    target = torch.tensor([[0.0, 0.0], [0.0, 3.0]])
    num, den = obj.score(pred, target)
    expected = (1 + 2**power + 3**power) / 4
    assert float(num.sum() / den.sum()) == pytest.approx(expected)
    assert float(obj.loss(pred, target)) == pytest.approx(expected)
    with pytest.raises(ConfigError, match="pred.shape"):
        obj.loss(pred, target[:, :1])


def test_slices_aggregate_exactly():
    obj = OBJECTIVES.create("mse")
    num, den = torch.tensor([1.0, 3.0, 8.0]), torch.tensor([1.0, 1.0, 2.0])
    metrics = aggregate(obj, num, den, {"series": torch.tensor([0, 0, 1])})
    assert metrics.value == pytest.approx(12 / 4) and metrics.slices == {"series": {"0": 2.0, "1": 4.0}}
    assert metrics.name == "mse" and not metrics.higher_is_better and math.isfinite(metrics.value)
