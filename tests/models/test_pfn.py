"""PFN / TabPFN (arXiv:2112.10510, arXiv:2207.01848): the prior, in-context prediction, no fitting."""

import pytest
import torch

import mixerlab
from mixerlab.bench.pfn_baseline import PFNBaseline
from mixerlab.errors import ConfigError
from mixerlab.models.pfn import PriorFittedNetwork, load_pfn, save_pfn, train_pfn
from mixerlab.registry import BASELINES
from mixerlab.tasks.prior import sample_prior_batch

SMALL = {"max_features": 6, "max_classes": 4, "dim": 8, "depth": 2, "num_heads": 2, "hidden_dim": 16}


def test_prior_is_deterministic_from_its_seed():
    a = sample_prior_batch(3, batch_size=4, num_rows=33, num_train=20, max_features=6, max_classes=4)
    b = sample_prior_batch(3, batch_size=4, num_rows=33, num_train=20, max_features=6, max_classes=4)
    c = sample_prior_batch(4, batch_size=4, num_rows=33, num_train=20, max_features=6, max_classes=4)
    assert a.x.shape == (4, 33, 6) and a.y.shape == (4, 33)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.num_classes, b.num_classes)
    assert not torch.equal(a.x, c.x)
    assert ((a.y >= 0) & (a.y < a.num_classes[:, None])).all() and torch.isfinite(a.x).all()


def test_prediction_needs_no_gradient_and_changes_no_parameter():
    torch.manual_seed(0)
    model = PriorFittedNetwork(**SMALL)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(0)
    x_train, y_train, x_test = (
        torch.randn(15, 5, generator=g),
        torch.randint(0, 3, (15,), generator=g),
        torch.randn(7, 5, generator=g),
    )
    out = model.predict(x_train, y_train, x_test, num_classes=3)
    assert out.shape == (7, 3) and not out.requires_grad
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(7))
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())


def test_test_rows_attend_to_training_rows_only():
    torch.manual_seed(0)
    model = PriorFittedNetwork(**SMALL).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 21, 6, generator=g, dtype=torch.float64)
    y_train = torch.randint(0, 4, (2, 13), generator=g)
    logits = model(x, y_train)  # [2, 8, 4]
    changed = x.clone()
    changed[:, 15] += 3.0  # test row 2
    other = model(changed, y_train)
    keep = [i for i in range(8) if i != 2]
    torch.testing.assert_close(other[:, keep], logits[:, keep])
    assert not torch.allclose(other[:, 2], logits[:, 2])
    changed = x.clone()
    changed[:, 0] += 3.0  # a training row reaches every test row
    assert not torch.allclose(model(changed, y_train), logits)


def test_training_saves_weights_that_load_without_code(tmp_path):
    model = train_pfn(steps=3, batch_size=2, max_rows=40, log=lambda _: None, **SMALL)
    save_pfn(model, tmp_path / "pfn.pt")
    loaded = load_pfn(tmp_path / "pfn.pt")  # weights_only=True
    x = torch.randn(1, 9, 6)
    torch.testing.assert_close(
        loaded(x, torch.zeros(1, 5, dtype=torch.long)), model(x, torch.zeros(1, 5, dtype=torch.long))
    )


def test_baseline_fits_without_gradient_and_predicts_a_table(tmp_path):
    torch.manual_seed(0)
    save_pfn(PriorFittedNetwork(**SMALL).eval(), tmp_path / "pfn.pt")
    assert "pfn" in BASELINES
    baseline = BASELINES.create("pfn", weights=str(tmp_path / "pfn.pt"))
    assert isinstance(baseline, PFNBaseline)
    task = mixerlab.create_task("synthetic_table", num_examples=60)
    train, test = task.train_data(0), task.eval_data(0)[0]
    before = [p.detach().clone() for p in baseline._network().parameters()]
    baseline.fit(task, train)
    out = baseline.predict(task, test)
    assert out.shape == (len(test), task.model_io()["num_classes"]) and torch.isfinite(out).all()
    assert all(torch.equal(p, q) for p, q in zip(baseline._network().parameters(), before))
    with pytest.raises(ConfigError, match="weights"):
        BASELINES.create("pfn", weights=str(tmp_path / "missing.pt")).fit(task, train)


def test_tables_wider_than_the_network_are_config_errors():
    model = PriorFittedNetwork(**SMALL)
    with pytest.raises(ConfigError, match="num_features"):
        model.predict(torch.randn(5, 7), torch.zeros(5), torch.randn(2, 7), num_classes=2)
