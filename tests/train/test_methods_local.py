"""Block-local learning (LLS, MAN, counter-current): each piece learns from its own loss only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from mixerlab.errors import ConfigError
from mixerlab.train.methods import create_method, unwrap
from mixerlab.train.methods.local import periodic_basis

sys.path.insert(0, str(Path(__file__).parent))  # the method tests' shared helpers (importlib mode)
from test_methods_support import backward_crosses_blocks, gradients, tiny_batch, tiny_model


@pytest.mark.parametrize("kind", ["classify", "next_token"])
@pytest.mark.parametrize("name", ["lls", "man", "ccl"])
def test_local_methods_send_no_gradient_between_blocks(name, kind):
    assert not backward_crosses_blocks(name, {}, kind)


def test_lls_basis_is_fixed_orthonormal_and_adds_no_parameters():
    basis = periodic_basis(5, 16)
    torch.testing.assert_close(basis @ basis.T, torch.eye(5), atol=1e-6, rtol=0)
    model = tiny_model()
    method = create_method("lls", {})
    wrapped = method.wrap(model)
    assert wrapped is model  # no auxiliary network: the basis is not a parameter
    torch.testing.assert_close(method.basis, basis)
    # The stem's local loss is the cross-entropy of its pooled output against the basis.
    batch = tiny_batch()
    h, _ = model.stem(batch["inputs"])
    pooled = h[:, model.stem.num_prefix_tokens :].mean(1)
    want = torch.nn.functional.cross_entropy(pooled @ basis.T, batch["targets"])
    torch.testing.assert_close(method.local_loss(h, batch["targets"], model.stem), want)


def test_lls_needs_more_channels_than_classes():
    with pytest.raises(ConfigError, match="lls.*model.dim"):
        create_method("lls", {}).wrap(tiny_model(dim=4))


def test_man_auxiliary_nets_are_moving_averages_of_the_next_block():
    method = create_method("man", {"momentum": 0.9})
    model = method.wrap(tiny_model())
    blocks = unwrap(model).backbone.blocks
    aux = model.extras["aux"]
    assert len(aux) == len(blocks)  # stem and blocks 1..L-1 each read through EMA(next block)
    assert all(not p.requires_grad for net in aux for p in net.ema_block.parameters())
    grads = gradients(method, model, tiny_batch())
    assert not any(".ema_block." in k for k in grads)  # the moving averages are not trained
    assert any(k.startswith("extras.aux.0.bias") for k in grads)  # the learnable bias is
    before = [p.clone() for p in aux[1].ema_block.parameters()]
    with torch.no_grad():
        for p in blocks[1].parameters():
            p.add_(1.0)
    method.after_step(model, 0)
    for old, ema, p in zip(before, aux[1].ema_block.parameters(), blocks[1].parameters()):
        torch.testing.assert_close(ema, 0.9 * old + 0.1 * p)


def test_ccl_trains_forward_and_feedback_networks_toward_each_other():
    torch.manual_seed(0)
    method = create_method("ccl", {})
    model = method.wrap(tiny_model())
    batch = tiny_batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    stem = unwrap(model).stem

    def alignment() -> float:
        with torch.no_grad():
            h, _ = stem(batch["inputs"])
            outputs = [h]
            for block in unwrap(model).backbone.blocks:
                outputs.append(block(outputs[-1])[0])
            signals = model.extras["feedback"]()
            return sum(
                float(method.alignment(o, c, batch["targets"], stem)) for o, c in zip(outputs, signals)
            )

    start = alignment()
    for step in range(30):
        grads = gradients(method, model, batch, step)
        opt.step()
    assert any(k.startswith("extras.feedback.layers") for k in grads)  # the feedback net learns too
    assert alignment() < 0.75 * start
