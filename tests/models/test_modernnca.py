"""ModernNCA (arXiv:2407.03257): the prediction is a vote of candidate labels, never of the row itself."""

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.models.modernnca import ModernNCA
from mixerlab.tasks.base import TaskData


def _table(n: int, seed: int, num_classes: int | None = 3) -> TaskData:
    g = torch.Generator().manual_seed(seed)
    inputs = {
        "numerical": torch.randn(n, 4, generator=g),
        "categorical": torch.randint(0, 3, (n, 1), generator=g),
    }
    targets = torch.randint(0, num_classes, (n,), generator=g) if num_classes else torch.randn(n, generator=g)
    return TaskData(inputs, targets)


def _model(num_classes: int | None = 3, **overrides) -> ModernNCA:
    kwargs = {"num_features": 4, "cardinalities": [3], "dim": 8, "depth": 1, **overrides}
    if num_classes:
        kwargs["num_classes"] = num_classes
    return mixerlab.create_model("modernnca", **kwargs)


def test_classification_is_a_convex_combination_of_candidate_labels():
    torch.manual_seed(0)
    model = _model().double().eval()
    train = _table(11, 0)
    model.set_candidates(train)
    query = _table(5, 1)
    inputs = {k: v.double() if v.is_floating_point() else v for k, v in query.inputs.items()}
    probs = model(inputs)[0].exp()  # [5, 3]
    torch.testing.assert_close(probs.sum(-1), torch.ones(5, dtype=torch.float64))
    # Reference: the weights of the paper's vote, one candidate at a time.
    q = model.embedding(inputs)
    keys = model.embedding({k: getattr(model, f"candidate_{k}") for k in ("numerical", "categorical")})
    for b in range(5):
        logits = torch.stack([-(q[b] - keys[c]).norm() for c in range(11)])
        w = torch.softmax(logits, 0)
        expected = sum(w[c] * torch.eye(3, dtype=torch.float64)[train.targets[c]] for c in range(11))
        torch.testing.assert_close(probs[b], expected)


def test_regression_vote_lies_within_the_candidate_labels():
    torch.manual_seed(0)
    model = _model(num_classes=None).eval()
    train = _table(9, 0, num_classes=None)
    model.set_candidates(train)
    y = model(_table(6, 1).inputs)[0]
    assert y.shape == (6,)
    assert (y >= train.targets.min() - 1e-6).all() and (y <= train.targets.max() + 1e-6).all()


def test_a_row_never_votes_for_itself_in_training():
    torch.manual_seed(0)
    train = _table(7, 0)
    # Labels 0..6 as their own classes: a row's vote for its own class can only come from itself.
    train = TaskData(train.inputs, torch.arange(7))
    model = _model(num_classes=7, sample_rate=1.0)
    model.set_candidates(train)
    model.train()
    probs = model(train.inputs)[0].exp()
    assert (probs.diagonal() < 1e-9).all()
    model.eval()  # at prediction a training row is its own nearest neighbour
    assert (model(train.inputs)[0].exp().diagonal() > 1e-3).all()


def test_gradients_seed_and_saved_candidates():
    torch.manual_seed(0)
    model = _model()
    model.set_candidates(_table(10, 0))
    query = _table(4, 1)
    model.eval()
    y = model(query.inputs)[0]
    y.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    torch.manual_seed(0)
    again = _model()
    again.load_state_dict(model.state_dict())  # the candidates travel with the weights
    torch.testing.assert_close(again.eval()(query.inputs)[0], y, rtol=0, atol=0)


def test_missing_candidates_and_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="set_candidates"):
        _model().eval()(_table(2, 0).inputs)
    with pytest.raises(ConfigError, match="mixer"):
        _model(mixer="attention")
    with pytest.raises(ConfigError, match="candidates"):
        _model().set_candidates({"numerical": torch.randn(3, 2), "targets": torch.zeros(3)})
