"""Nested networks: SortedNet, Matryoshka and Once-for-All train sub-networks evaluated after training."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from mixerlab.errors import ConfigError
from mixerlab.train import RunConfig, Trainer, from_dict
from mixerlab.train.methods import create_method, unwrap
from mixerlab.train.methods.elastic import SubNetwork, compute_fraction, hidden_linears, narrowed

sys.path.insert(0, str(Path(__file__).parent))  # the method tests' shared helpers (importlib mode)
from test_methods_support import tiny_batch, tiny_model


def digits_config(method: dict) -> RunConfig:
    return from_dict(
        RunConfig,
        {
            "task": {"name": "digits"},
            "model": {"name": "image_classifier", "dim": 16, "depth": 2, "options": {"mixing": "noncausal"}},
            "train": {"epochs": 2, "batch_size": 64, "lr": 3e-3},
            "method": method,
        },
    )


def test_a_sub_network_is_the_leading_units_and_blocks_of_the_model():
    model = tiny_model(depth=3)
    x = tiny_batch()["inputs"]
    # Narrowing to width w equals zeroing the trailing input columns of every map reading hidden units.
    narrow = SubNetwork(model, 0.5, 2)
    with torch.no_grad():
        pred, _ = narrow(x)
        for layer in hidden_linears(model):
            layer.weight[:, math.ceil(layer.in_features / 2) :] = 0
        model.backbone.blocks[2].forward = lambda h, **kw: (h, None)  # depth 2: block 3 is skipped
        want, _ = model(x)
    # The final norm of a 2-block stack reads the output of block 2 either way.
    torch.testing.assert_close(pred, want, rtol=1e-5, atol=1e-6)
    assert compute_fraction(tiny_model(depth=4), 1.0, 2) == pytest.approx(0.5)
    assert 0 < compute_fraction(model, 0.5, 3) < 1


def test_narrowing_is_undone_after_the_sub_network():
    model = tiny_model()
    x = tiny_batch()["inputs"]
    with torch.no_grad():
        full, _ = model(x)
        with narrowed(model, 0.25):
            small, _ = model(x)
        again, _ = model(x)
    assert not torch.allclose(full, small)
    torch.testing.assert_close(full, again)
    # A narrowed network still reads its input (a prefix of fused projections would not).
    assert not torch.allclose(small[0], small[1])


def test_sortednet_evaluates_every_sub_network_after_training():
    config = digits_config({"name": "sortednet", "options": {"widths": [0.5, 1.0], "num_samples": 2}})
    trainer = Trainer(config, progress=False)
    result = trainer.fit()
    assert set(result.variants) == {"w0.5_d1", "w0.5_d2", "w1_d1", "w1_d2"}
    full = result.variants["w1_d2"]
    assert full["accuracy"] == pytest.approx(result.metrics.value) and full["compute_fraction"] == 1.0
    assert all(0 < v["compute_fraction"] <= 1 and 0 <= v["accuracy"] <= 1 for v in result.variants.values())
    # Each step trained the full network and two sampled sub-networks.
    assert len(trainer.method.last_sampled) == 3 and trainer.method.last_sampled[0] == (1.0, 2)


def test_sortednet_trains_its_sub_networks_where_plain_training_does_not():
    torch.manual_seed(0)
    x, y = tiny_batch(n=48)["inputs"], tiny_batch(n=48)["targets"]
    from test_methods_support import objective

    results = {}
    for name, options in (
        ("standard", {}),
        ("sortednet", {"widths": [0.25, 1.0], "depths": [1, 3], "num_samples": 3}),
    ):
        torch.manual_seed(0)
        method = create_method(name, options)
        model = method.wrap(tiny_model())
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for step in range(60):
            opt.zero_grad()
            loss, _ = method.loss(model, {"inputs": x, "targets": y}, objective(), step)
            loss.backward()
            opt.step()
        with torch.no_grad():
            results[name] = float(objective().loss(SubNetwork(model, 0.25, 1)(x)[0], y))
    assert results["sortednet"] < results["standard"]


def test_matryoshka_trains_every_prefix_and_evaluates_each():
    result = Trainer(
        digits_config({"name": "matryoshka", "options": {"dims": [4, 8, 16]}}), progress=False
    ).fit()
    assert set(result.variants) == {"dim4", "dim8", "dim16"}
    assert result.variants["dim16"]["accuracy"] == pytest.approx(result.metrics.value)
    assert result.variants["dim4"]["embedding_fraction"] == 0.25


def test_ofa_shrinks_progressively():
    method = create_method("ofa", {"widths": [0.25, 0.5, 1.0], "phase_steps": [3, 6], "seed": 0})
    model = method.wrap(tiny_model())
    from test_methods_support import objective

    seen = []
    for step in range(12):
        method.loss(model, tiny_batch(), objective(), step)
        seen.append(method.last_sampled)
    assert seen[:3] == [None] * 3  # the full network alone first
    assert all(s is not None and s[0] == 1.0 for s in seen[3:6])  # then elastic depth at full width
    assert any(s[0] < 1.0 for s in seen[6:])  # then elastic width too
    assert len(method.evaluate_variants(model, lambda m: _Metric())) == 3 * len(unwrap(model).backbone.blocks)


class _Metric:
    name, value = "accuracy", 1.0


def test_nested_methods_check_their_grid():
    with pytest.raises(ConfigError, match="sortednet.*widths"):
        create_method("sortednet", {"widths": [0.0, 1.0]})
    with pytest.raises(ConfigError, match="sortednet.*depths"):
        create_method("sortednet", {"depths": [5]}).wrap(tiny_model(depth=2))
    with pytest.raises(ConfigError, match="matryoshka.*dims"):
        create_method("matryoshka", {"dims": [64]}).wrap(tiny_model(dim=16))
