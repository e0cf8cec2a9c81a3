"""MoE: routing covers exactly k experts per token, dispatch == a per-token loop, the load-balancing
loss reaches the router, capacity overflow drops the later assignments; WideNet shares one MoE."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.layers.aux_loss import collect_aux_losses
from mixerlab.layers.channel_mixers.moe import MixtureOfExperts, route
from mixerlab.layers.sharing import sharing_scope


def per_token_reference(moe: MixtureOfExperts, x: torch.Tensor) -> torch.Tensor:
    """The MoE equation evaluated one token at a time, without the sort/gather dispatch."""
    out = []
    for tok in x.reshape(-1, moe.dim):
        logits = moe.router(tok)
        s = torch.softmax(logits, -1) if moe.gating == "softmax" else torch.sigmoid(logits)
        top = s.topk(moe.top_k).indices
        g = s[top] / s[top].sum() if (moe.renormalize and moe.top_k > 1) else s[top]
        y = torch.zeros_like(tok)
        for e, w in zip(top.tolist(), g):
            y = y + w * moe._ffn(tok @ moe.w_in[e], moe.w_out[e])
        if moe.shared_in is not None:
            y = y + moe._ffn(moe.shared_in(tok), moe.shared_out.weight.t())
        out.append(y)
    return torch.stack(out).reshape(x.shape)


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_every_token_gets_exactly_k_distinct_experts(top_k):
    scores = torch.rand(37, 5)
    expert, token, slot, keep = route(scores, top_k, capacity=None)
    assert keep.all() and expert.numel() == 37 * top_k
    assert (expert[1:] >= expert[:-1]).all(), "assignments must be sorted by expert"
    for t in range(37):
        mine = expert[token == t]
        assert mine.numel() == top_k and mine.unique().numel() == top_k
        assert set(mine.tolist()) == set(scores[t].topk(top_k).indices.tolist())
    assert sorted(slot.tolist()) == sorted(list(range(top_k)) * 37)


@pytest.mark.parametrize(
    "options",
    [
        {"top_k": 2},
        {"top_k": 1},
        {"top_k": 2, "gating": "sigmoid", "num_shared_experts": 1},
        {"top_k": 3, "expert": "gelu", "renormalize": False},
    ],
)
def test_dispatch_matches_per_token_loop(options):
    moe = MixtureOfExperts(dim=8, num_experts=4, hidden_dim=6, **options).double()
    x = torch.randn(3, 7, 8, dtype=torch.float64)
    torch.testing.assert_close(moe(x), per_token_reference(moe, x))


def test_load_balancing_loss_alone_trains_the_router():
    moe = MixtureOfExperts(dim=8, num_experts=4, top_k=2, aux_loss_coef=0.1).train()
    with collect_aux_losses() as aux:
        moe(torch.randn(2, 9, 8))
    assert set(aux.by_name()) == {"moe_load_balance"}
    aux.total().backward()
    assert moe.router.weight.grad is not None and moe.router.weight.grad.abs().sum() > 0
    assert moe.w_in.grad is None, "the balance loss must not depend on expert weights"


def test_load_balancing_loss_is_coef_for_uniform_router():
    # With P_e = 1/E for every e, E * sum_e f_e P_e = sum_e f_e = 1 whatever the choices.
    moe = MixtureOfExperts(dim=8, num_experts=4, top_k=2, aux_loss_coef=0.05).train()
    torch.nn.init.zeros_(moe.router.weight)
    with collect_aux_losses() as aux:
        moe(torch.randn(10, 8))
    assert aux.by_name()["moe_load_balance"] == pytest.approx(0.05)
    with collect_aux_losses() as aux:
        moe.eval()(torch.randn(10, 8))
    assert aux.items == [], "no auxiliary loss at evaluation"


def test_capacity_overflow_drops_later_tokens_in_training_only():
    moe = MixtureOfExperts(dim=4, num_experts=4, top_k=1, hidden_dim=5, capacity_factor=1.0).double()
    with torch.no_grad():  # every token with positive features prefers expert 0
        moe.router.weight.zero_()
        moe.router.weight[0] = 10.0
    x = torch.rand(8, 4, dtype=torch.float64) + 0.1
    assert moe.train().capacity(8) == 2  # ceil(1.0 * 8 tokens * k=1 / 4 experts)
    y_train = moe(x)
    y_eval = moe.eval()(x)
    kept = y_train.abs().sum(-1) > 0
    assert kept.tolist() == [True, True] + [False] * 6, "first come, first served; the rest get 0"
    torch.testing.assert_close(y_train[:2], y_eval[:2])
    assert (y_eval.abs().sum(-1) > 0).all(), "eval mode never drops"


def test_capacity_drops_second_choices_before_first_choices():
    scores = torch.tensor([[0.6, 0.4], [0.3, 0.7], [0.55, 0.45]])
    # capacity 2 per expert; first choices: e0 <- t0, t2; e1 <- t1. Second choices: e1 <- t0, t2; e0 <- t1.
    expert, token, slot, keep = route(scores, top_k=2, capacity=2)
    kept = {(int(e), int(t)) for e, t, k in zip(expert, token, keep) if k}
    assert kept == {(0, 0), (0, 2), (1, 1), (1, 0)}


def test_widenet_moe_shares_one_moe_across_layers():
    with sharing_scope():
        model = mixerlab.create_model("lm", vocab_size=11, dim=16, depth=3, channel_mixer="widenet_moe")
    mixers = [block.channel_mixer for block in model.backbone.blocks]
    assert all(m.moe is mixers[0].moe for m in mixers)
    assert len({id(m.norm) for m in mixers}) == 3, "one norm per layer"
    moe_params = sum(p.numel() for p in mixers[0].moe.parameters())
    per_layer = sum(p.numel() for m in mixers for p in m.norm.parameters())
    rest = sum(p.numel() for n, p in model.named_parameters() if "channel_mixer" not in n)
    assert sum(p.numel() for p in model.parameters()) == rest + moe_params + per_layer
    logits, _ = model(torch.randint(0, 11, (2, 5)))
    logits.sum().backward()
    assert mixers[0].moe.w_in.grad.abs().sum() > 0

    with sharing_scope():
        other = mixerlab.create_model("lm", vocab_size=11, dim=16, depth=3, channel_mixer="widenet_moe")
    assert other.backbone.blocks[0].channel_mixer.moe is not mixers[0].moe, "scopes never share"
