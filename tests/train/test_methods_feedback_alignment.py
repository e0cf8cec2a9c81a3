"""Direct feedback alignment: updates from the output error through fixed matrices, none across blocks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from mixerlab.registry import METHODS
from mixerlab.train.methods import create_method, unwrap

sys.path.insert(0, str(Path(__file__).parent))  # the method tests' shared helpers (importlib mode)
from test_methods_support import backward_crosses_blocks, gradients, objective, tiny_batch, tiny_model


@pytest.mark.parametrize("kind", ["classify", "next_token"])
def test_dfa_sends_no_gradient_between_blocks(kind):
    assert not backward_crosses_blocks("dfa", {"seed": 0}, kind)


def test_each_block_update_is_its_own_jacobian_times_the_fixed_matrix_times_the_error():
    method = create_method("dfa", {"seed": 3})
    model = method.wrap(tiny_model())
    batch = tiny_batch()
    grads = gradients(method, model, batch)
    # Recompute block 2's update by hand: e = dL/dy, delta = e B_2 at every token of its output.
    base = unwrap(model)
    h, _ = base.stem(batch["inputs"])
    for block in base.backbone.blocks[:2]:
        h = block(h)[0]
    pred = base.head(base.backbone.norm(base.backbone.blocks[2](h)[0]), base.stem, {})
    (error,) = torch.autograd.grad(objective().loss(pred, batch["targets"]), pred)
    out = base.backbone.blocks[2](h.detach())[0]
    delta = (error @ method.feedback[3])[:, None, :].expand_as(out)
    params = list(base.backbone.blocks[2].parameters())
    expected = torch.autograd.grad(out, params, delta)
    names = [k for k, _ in base.backbone.blocks[2].named_parameters()]
    for name, want in zip(names, expected):
        torch.testing.assert_close(grads[f"backbone.blocks.2.{name}"], want, rtol=1e-4, atol=1e-7)


def test_the_feedback_matrices_never_change_and_are_not_trained():
    method = create_method("dfa", {"seed": 0})
    model = method.wrap(tiny_model())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = tiny_batch()
    loss, _ = method.loss(model, batch, objective(), 0)
    method.backward(loss, model, 0)
    first = [b.clone() for b in method.feedback]
    trained = {id(p) for p in model.parameters()}
    for step in range(1, 4):
        opt.step()
        opt.zero_grad()
        loss, _ = method.loss(model, batch, objective(), step)
        method.backward(loss, model, step)
    assert all(id(b) not in trained for b in method.feedback)
    assert all(torch.equal(a, b) for a, b in zip(first, method.feedback))
    # A resumed run draws the same matrices from the seed.
    again = create_method("dfa", {"seed": 0})
    assert all(torch.equal(a, b) for a, b in zip(first, again.matrices(5, 16, 4, torch.device("cpu"))))


def test_dfa_is_registered_with_both_papers():
    entry = METHODS.entry("dfa")
    assert entry.arxiv == "1609.01596" and "2006.12878" in entry.meta["arxiv_also"]
    assert "1609.01596" in entry.builder.__doc__.splitlines()[0]
