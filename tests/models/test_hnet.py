"""hnet: dynamic chunking (H-Net, arXiv:2507.07955): causal routing, chunks, up-sampling, ratio loss."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError
from mixerlab.layers.aux_loss import collect_aux_losses
from mixerlab.models.hnet import DynamicChunkingLM, ratio_loss
from mixerlab.registry import MODELS
from mixerlab.train import train
from mixerlab.train.config import RunConfig, from_dict


def _model(**kw) -> DynamicChunkingLM:
    torch.manual_seed(0)
    return mixerlab.create_model("hnet", vocab_size=13, dim=16, depth=1, **kw).double()


def test_hnet_is_registered_with_its_paper():
    assert MODELS.entry("hnet").arxiv == "2507.07955"
    assert "2507.07955" in DynamicChunkingLM.__doc__.splitlines()[0]


def test_routing_at_t_reads_only_t_and_t_minus_one():
    model = _model()
    with torch.no_grad():
        model.w_q.weight.normal_()  # away from the identity, so q and k differ
    x = torch.randn(2, 33, 16, dtype=torch.float64)
    p, b = model.route(x)
    assert p[:, 0].eq(1).all() and torch.equal(b, p >= 0.5)
    # p_t = (1 - cos(q_t, k_{t-1})) / 2, one position at a time.
    q, k = model.w_q(x), model.w_k(x)
    for t in (1, 17, 32):
        expected = (1 - torch.cosine_similarity(q[:, t], k[:, t - 1], dim=-1)) / 2
        torch.testing.assert_close(p[:, t], expected)
    changed = x.clone()
    changed[:, 20] += 1.0
    p2, _ = model.route(changed)
    moved = (p2 - p).abs().amax(0) > 1e-12
    assert moved.nonzero().flatten().tolist() == [20, 21]


def test_chunks_follow_the_boundaries_and_upsampling_restores_the_length():
    model = _model()
    x = torch.randn(3, 33, 16, dtype=torch.float64)
    x[0, 10:20] = x[0, 9]  # a run of equal states: cos = 1, so no boundary inside it (identity W)
    p, b = model.route(x)
    assert not b[0, 10:20].any()
    chunks, probs, chunk_of = model.downsample(x, p, b)
    assert chunks.shape[1] == int(b.sum(1).max())
    for row in range(3):
        kept = x[row, b[row]]
        torch.testing.assert_close(chunks[row, : len(kept)], kept)  # the boundary tokens, in order
        torch.testing.assert_close(probs[row, : len(kept)], p[row, b[row]])
        assert chunk_of[row].max() == len(kept) - 1
    up = model.upsample(model.smooth(chunks, probs), chunk_of, p, b)
    assert up.shape == x.shape


def test_smoothing_is_the_ema_by_boundary_probability_and_confidence_is_straight_through():
    z = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    probs = torch.rand(2, 5, dtype=torch.float64, requires_grad=True)
    out = DynamicChunkingLM.smooth(z, probs)
    # The per-step recurrence of the paper, written out: outputs and gradients must agree.
    expected, steps = torch.zeros_like(z[:, 0]), []
    for c in range(5):
        expected = probs[:, c, None] * z[:, c] + (1 - probs[:, c, None]) * expected
        steps.append(expected)
    loop = torch.stack(steps, dim=1)
    torch.testing.assert_close(out, loop)
    weights = torch.randn_like(out)
    got = torch.autograd.grad((out * weights).sum(), (z, probs))
    want = torch.autograd.grad((loop * weights).sum(), (z, probs))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    p = torch.tensor([[1.0, 0.2, 0.7]], dtype=torch.float64, requires_grad=True)
    b = p.detach() >= 0.5
    up = DynamicChunkingLM.upsample(torch.ones(1, 2, 1, dtype=torch.float64), torch.tensor([[0, 0, 1]]), p, b)
    torch.testing.assert_close(up.flatten(), torch.ones(3, dtype=torch.float64))  # forward value 1
    up.sum().backward()
    torch.testing.assert_close(p.grad, torch.tensor([[1.0, -1.0, 1.0]], dtype=torch.float64))


def test_hnet_is_causal_end_to_end():
    model = _model()
    tokens = torch.randint(0, 13, (2, 33), generator=torch.Generator().manual_seed(3))
    logits, _ = model(tokens)
    changed = tokens.clone()
    changed[:, 25:] = (changed[:, 25:] + 1) % 13
    logits2, _ = model(changed)
    assert logits.shape == (2, 33, 13)
    torch.testing.assert_close(logits[:, :25], logits2[:, :25])


@pytest.mark.parametrize("target", [2.0, 4.0, 6.0])
def test_ratio_loss_is_smallest_at_the_target_ratio(target):
    fractions = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    losses = ratio_loss(fractions, fractions, target)
    best = float(fractions[losses.argmin()])
    assert abs(best - 1 / target) < 0.011
    assert float(ratio_loss(torch.tensor(1 / target), torch.tensor(1 / target), target)) == pytest.approx(1.0)


def test_ratio_loss_reaches_the_trainer_through_the_aux_mechanism():
    model = _model(ratio_loss_weight=0.5)
    tokens = torch.randint(0, 13, (2, 9))
    with collect_aux_losses() as aux:
        model(tokens)
    assert set(aux.by_name()) == {"hnet_ratio"} and aux.total() > 0
    with pytest.raises(ConfigError, match="target_ratio"):
        mixerlab.create_model("hnet", vocab_size=13, target_ratio=1.0)


def test_a_tiny_hnet_trains_on_char_lm():
    config = from_dict(
        RunConfig,
        {
            "task": {"name": "char_lm", "options": {"seq_len": 32, "num_train": 96, "max_test_chars": 256}},
            "model": {"name": "hnet", "dim": 16, "depth": 1},
            "train": {"epochs": 2, "batch_size": 16, "lr": 1e-2, "seed": 0},
        },
    )
    _, result = train(config, progress=False)
    first, last = result.history[0]["loss"], result.history[-1]["loss"]
    assert result.status == "finished" and last < first, result.history
