"""attentive_pool head: shapes per kind, every token read, order-free, and a model with it trains."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.registry import HEADS


def make(**kwargs):
    torch.manual_seed(0)
    return HEADS.create("attentive_pool", **{"dim": 8, "num_heads": 2, **kwargs}).double()


def test_shapes_per_kind():
    h = torch.randn(3, 7, 8, dtype=torch.float64)
    assert make(num_classes=5)(h).shape == (3, 5)
    assert make(num_outputs=1)(h).shape == (3,)
    assert make(num_outputs=2, num_queries=4)(h).shape == (3, 2)


def test_exactly_one_size_is_a_clear_error():
    with pytest.raises(ConfigError, match="num_classes/num_outputs"):
        HEADS.create("attentive_pool", dim=8)
    with pytest.raises(ConfigError, match="num_classes/num_outputs"):
        HEADS.create("attentive_pool", dim=8, num_classes=2, num_outputs=1)
    with pytest.raises(ConfigError, match="dim=8"):
        HEADS.create("attentive_pool", dim=8, num_classes=2, num_heads=3)


def test_every_token_changes_the_output():
    head = make(num_classes=4, num_queries=2)
    h = torch.randn(2, 9, 8, dtype=torch.float64)
    y = head(h)
    for t in range(9):
        h2 = h.clone()
        h2[:, t] += torch.randn(8, dtype=torch.float64)
        assert not torch.allclose(head(h2), y), f"token {t} is not read"


def test_invariant_to_the_order_of_the_tokens():
    head = make(num_outputs=3, num_queries=3)
    h = torch.randn(2, 11, 8, dtype=torch.float64)
    perm = torch.randperm(11)
    torch.testing.assert_close(head(h[:, perm]), head(h))


def test_a_model_with_the_head_trains_on_a_classify_task():
    torch.manual_seed(0)
    model = mixerlab.create_model(
        "tabular",
        num_features=3,
        cardinalities=[],
        num_classes=2,
        dim=16,
        depth=1,
        head={"name": "attentive_pool", "num_heads": 2},
    )
    assert type(model.head).__name__ == "AttentivePoolHead"
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, generator=g)
    labels = (x[:, 0] > 0).long()  # a class read from one feature token
    batch = {"numerical": x, "categorical": torch.zeros(64, 0, dtype=torch.long)}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        logits, _ = model(batch)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert logits.shape == (64, 2)
    assert losses[-1] < 0.5 * losses[0], losses
