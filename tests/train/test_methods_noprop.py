"""NoProp: every block learns to denoise a label embedding alone, with no pass through other blocks."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

from mixerlab.errors import ConfigError
from mixerlab.train.methods import create_method, unwrap

sys.path.insert(0, str(Path(__file__).parent))  # the method tests' shared helpers (importlib mode)
from test_methods_support import backward_crosses_blocks, gradients, tiny_batch, tiny_model


@pytest.mark.parametrize("kind", ["classify", "next_token"])
def test_noprop_sends_no_gradient_between_blocks(kind):
    assert not backward_crosses_blocks("noprop", {"seed": 0}, kind)


def test_a_block_update_does_not_depend_on_any_other_block():
    # Not even through the forward pass: other blocks' weights changed, block 1's update is the same.
    method = create_method("noprop", {"seed": 0})
    model = method.wrap(tiny_model())
    other = copy.deepcopy(model)
    with torch.no_grad():
        for block in unwrap(other).backbone.blocks[1:]:
            for p in block.parameters():
                p.normal_()
    batch = tiny_batch()
    first = [k for k, _ in model.named_parameters() if k.startswith("extras.denoisers.0.")]
    a = gradients(method, model, batch)
    method.generator.manual_seed(0)
    twin = create_method("noprop", {"seed": 0})
    twin.kind = method.kind
    b = gradients(twin, other, batch)
    method.generator.manual_seed(0)
    for k in first:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_training_runs_each_block_once_on_noised_labels_and_inference_chains_them():
    method = create_method("noprop", {"seed": 0})
    model = method.wrap(tiny_model())
    blocks = unwrap(model).backbone.blocks
    calls = [0] * len(blocks)
    handles = [
        b.register_forward_hook(lambda m, a, o, i=i: calls.__setitem__(i, calls[i] + 1))
        for i, b in enumerate(blocks)
    ]
    gradients(method, model, tiny_batch())
    assert calls == [1] * len(blocks)  # one denoising step per block, none fed by another block
    calls[:] = [0] * len(blocks)
    with torch.no_grad():
        pred, _ = model(tiny_batch()["inputs"])
    for h in handles:
        h.remove()
    assert calls == [1] * len(blocks) and pred.shape == (12, 5)
    # Different stems: blocks share no parameter.
    stems = [d.stem for d in model.extras["denoisers"]]
    assert len({id(p) for s in stems for p in s.parameters()}) == sum(
        len(list(s.parameters())) for s in stems
    )


def test_noprop_rejects_a_regression_head():
    from mixerlab.train.config import ModelConfig
    from mixerlab.train.trainer import build_model

    class Task:
        kind, objective = "regress", "mse"

        def model_io(self):
            return {"num_features": 3}

    model = build_model(ModelConfig(name="tabular", dim=16, depth=2), Task())
    with pytest.raises(ConfigError, match="noprop.*task kind"):
        create_method("noprop", {}).wrap(model)
