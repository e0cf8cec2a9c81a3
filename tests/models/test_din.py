"""Deep Interest Network (arXiv:1706.06978): shapes, gradients, seeding and the local activation unit."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError

SIZES = {"vocab_size": 13, "num_classes": 2, "dim": 6, "depth": 2, "hidden_dim": 8}


def build(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return mixerlab.create_model("din", **{**SIZES, **kwargs}, dtype=torch.float64)


def rows() -> dict[str, torch.Tensor]:
    history = torch.tensor([[3, 5, 7, 0, 0], [1, 12, 4, 4, 9], [2, 0, 0, 0, 0]])
    return {"candidate": torch.tensor([5, 9, 11]), "history": history}


def test_shapes_gradients_seeding_and_the_packed_form():
    model = build()
    logits, state = model(rows())
    assert logits.shape == (3, 2) and state is None
    logits.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    packed = torch.cat([rows()["candidate"][:, None], rows()["history"]], 1)
    torch.testing.assert_close(model(packed)[0], logits)
    torch.testing.assert_close(build(1)(rows())[0], build(1)(rows())[0], rtol=0, atol=0)
    assert not torch.allclose(build(1)(rows())[0], build(2)(rows())[0])


def test_permuting_the_history_leaves_the_output_unchanged():
    model = build()
    x = rows()
    order = torch.tensor([4, 2, 0, 3, 1])
    shuffled = {"candidate": x["candidate"], "history": x["history"][:, order]}
    torch.testing.assert_close(model(shuffled)[0], model(x)[0])


def test_padding_is_ignored_and_weighs_nothing():
    model = build()
    x = rows()
    _, _, weights = model.interest(x)
    assert torch.all(weights[x["history"] == 0] == 0)
    short = {"candidate": x["candidate"][:1], "history": torch.tensor([[3, 5, 7]])}
    torch.testing.assert_close(model(short)[0], model(x)[0][:1])
    with torch.no_grad():
        model.stem.weight[0].fill_(100.0)  # what the padding id embeds to does not matter
    torch.testing.assert_close(model(short)[0], model(x)[0][:1])


def test_weights_are_not_normalised_a_repeated_behaviour_counts_twice():
    model = build()
    once = {"candidate": torch.tensor([4]), "history": torch.tensor([[7, 0]])}
    twice = {"candidate": torch.tensor([4]), "history": torch.tensor([[7, 7]])}
    c1, interest1, w1 = model.interest(once)
    c2, interest2, w2 = model.interest(twice)
    torch.testing.assert_close(interest2, 2 * interest1)  # a softmax would keep it equal
    assert not torch.allclose(w2.sum(-1), torch.ones(1, dtype=torch.float64))
    # The unit is the paper's: an MLP of [candidate, behaviour, difference, product].
    e = model.stem.weight
    features = torch.cat([e[4], e[7], e[4] - e[7], e[4] * e[7]])
    torch.testing.assert_close(w1[0, 0], model.activation.mlp(features)[0])


def test_inputs_and_options_that_do_not_fit_are_errors():
    model = build()
    with pytest.raises(ConfigError, match="inputs"):
        model({"history": rows()["history"]})
    with pytest.raises(ConfigError, match="mixer"):
        build(mixer="attention")
