"""FinalMLP (arXiv:2304.03012): shapes, gradients, seeding, the gated streams and the bilinear fusion."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.models.finalmlp import BilinearFusion

SIZES = {"num_features": 3, "cardinalities": [4, 2], "dim": 4, "depth": 1, "hidden_dim": 8, "fusion_heads": 2}


def table(batch: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    cats = torch.stack([torch.randint(0, c, (batch,), generator=g) for c in (4, 2)], 1)
    return {"numerical": torch.randn(batch, 3, generator=g, dtype=torch.float64), "categorical": cats}


def build(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return mixerlab.create_model("finalmlp", **{**SIZES, "num_classes": 3, **kwargs}, dtype=torch.float64)


def test_shapes_gradients_and_seeding():
    model = build()
    logits, state = model(table())
    assert logits.shape == (5, 3) and state is None
    logits.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert build(num_classes=None, num_outputs=1)(table())[0].shape == (5,)
    torch.testing.assert_close(build(1)(table())[0], build(1)(table())[0], rtol=0, atol=0)
    assert not torch.allclose(build(1)(table())[0], build(2)(table())[0])


def test_the_fusion_is_bilinear_and_matches_a_per_head_loop():
    torch.manual_seed(0)
    fusion = BilinearFusion(width=6, num_heads=3, out_features=2).double()
    o1, o2 = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    term = fusion.bilinear(o1, o2)
    torch.testing.assert_close(fusion.bilinear(2 * o1, o2), 2 * term)  # linear in each stream
    torch.testing.assert_close(fusion.bilinear(o1, 2 * o2), 2 * term)
    torch.testing.assert_close(fusion.bilinear(o1 + o2, o2), term + fusion.bilinear(o2, o2))
    w3 = fusion.interaction
    loop = torch.zeros(4, 2, dtype=torch.float64)
    for b in range(4):
        for c in range(2):
            for h in range(3):
                a, z = o1[b, 2 * h : 2 * h + 2], o2[b, 2 * h : 2 * h + 2]
                loop[b, c] += a @ w3[h, :, :, c] @ z
    torch.testing.assert_close(term, loop)
    linear = fusion.first(o1) + fusion.second(o2)
    torch.testing.assert_close(fusion(o1, o2), linear + term)


def test_each_stream_is_gated_by_its_own_gate():
    model = build()
    with torch.no_grad():
        model.stream1.gate[-1].weight.zero_()
        model.stream1.gate[-1].bias.fill_(-50.0)  # 2 sigmoid(-50) ~ 0: stream 1 sees nothing
    o1, o2 = model.streams(table())
    expected = model.stream1.mlp(torch.zeros(1, o1.shape[1], dtype=torch.float64)).expand_as(o1)
    torch.testing.assert_close(o1, expected)
    assert o2.std(0).abs().sum() > 0  # the other stream still reads the rows


def test_sizes_that_do_not_fit_are_errors():
    with pytest.raises(ConfigError, match="fusion_heads"):
        build(fusion_heads=7)
    with pytest.raises(ConfigError, match="depth"):
        build(depth=2)
    with pytest.raises(ConfigError, match="mixer"):
        build(mixer="attention")
