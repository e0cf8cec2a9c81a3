"""Early exits stop confident examples early; test-time depth loops and skips blocks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from mixerlab.errors import ConfigError
from mixerlab.train.methods import create_method, unwrap
from mixerlab.train.methods.exits import EarlyExitNetwork, confidence, exit_logits

sys.path.insert(0, str(Path(__file__).parent))  # the method tests' shared helpers (importlib mode)
from test_methods_support import gradients, tiny_batch, tiny_model


class _Metric:
    name, value = "accuracy", 0.5


def test_every_exit_is_trained_jointly():
    method = create_method("early_exit", {})
    model = method.wrap(tiny_model(depth=3))
    grads = gradients(method, model, tiny_batch())
    assert any(k.startswith("extras.exits.0.") for k in grads) and any(
        k.startswith("extras.exits.1.") for k in grads
    )
    assert any(k.startswith("model.head.") for k in grads)  # the last exit is the model's own head


def test_a_confident_example_stops_early_and_saves_compute():
    method = create_method("early_exit", {"thresholds": [0.9]})
    model = method.wrap(tiny_model(depth=3))
    batch = tiny_batch()
    # Make exit 1 confident for the examples of one half only: a large logit on the mean pixel.
    with torch.no_grad():
        first = model.extras["exits"][0].head.proj
        first.weight.zero_()
        first.bias.zero_()
        bright = batch["inputs"].mean((1, 2, 3)) > batch["inputs"].mean()
        h, ctx = unwrap(model).stem(batch["inputs"])
        h = unwrap(model).backbone.blocks[0](h)[0]
        normed = model.extras["exits"][0].norm(h)[:, 0]  # the class token the head pools
        direction = torch.linalg.lstsq(normed, bright.float()[:, None] * 40.0).solution[:, 0]
        first.weight[0] = direction
        conf = confidence(exit_logits(model, 0, h, ctx))
    leaves = conf >= 0.9
    assert leaves.any() and (~leaves).any()
    runs = []
    later = unwrap(model).backbone.blocks[1].register_forward_hook(lambda m, a, o: runs.append(a[0].shape[0]))
    net = EarlyExitNetwork(model, 0.9)
    with torch.no_grad():
        pred, _ = net(batch["inputs"])
    later.remove()
    assert runs == [int((~leaves).sum())]  # block 2 ran only for the examples that did not leave
    torch.testing.assert_close(pred[leaves], exit_logits(model, 0, h, ctx)[leaves])
    assert net.exit_counts[0] == int(leaves.sum())
    assert net.compute_fraction() < 1.0
    rows = method.evaluate_variants(model, lambda m: (m(batch["inputs"]), _Metric())[1])
    assert rows["threshold0.9"]["compute_fraction"] < 1.0 and rows["exit3"]["compute_fraction"] == 1.0


def test_early_exit_needs_class_outputs():
    from mixerlab.train.config import ModelConfig
    from mixerlab.train.trainer import build_model

    class Task:
        kind, objective = "regress", "mse"

        def model_io(self):
            return {"num_features": 3}

    with pytest.raises(ConfigError, match="early_exit.*task kind"):
        create_method("early_exit", {}).wrap(
            build_model(ModelConfig(name="tabular", dim=16, depth=2), Task())
        )


def test_loop_depth_runs_a_looped_block_again_and_reports_its_depth():
    method = create_method("loop_depth", {"repeats": 3})
    model = method.wrap(tiny_model(depth=2))
    calls = []
    hooks = [
        b.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
        for i, b in enumerate(model.backbone.blocks)
    ]
    rows = method.evaluate_variants(model, lambda m: (m(tiny_batch()["inputs"]), _Metric())[1])
    for h in hooks:
        h.remove()
    assert rows["loop1"]["chain"] == [0, 0, 0, 1] and rows["loop1"]["compute_fraction"] == 2.0
    assert rows["skip2"]["chain"] == [0] and rows["skip2"]["compute_fraction"] == 0.5
    assert rows["stack_x3"]["compute_fraction"] == 3.0 and "most_confident" in rows
    assert calls[:6] == [0, 1, 1, 0, 0, 0]  # full [0, 1], skip1 [1], skip2 [0], then loop1 [0, 0, 0, 1]


def test_loop_depth_training_loops_and_skips_blocks_at_random():
    method = create_method("loop_depth", {"p_loop": 1.0, "p_skip": 0.0, "seed": 0})
    assert len(method.train_chain(3)) == 4
    method = create_method("loop_depth", {"p_loop": 0.0, "p_skip": 1.0, "seed": 0})
    assert len(method.train_chain(3)) == 2
