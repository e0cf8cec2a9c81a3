"""h2o: equal to attention while the budget covers the context; otherwise the cache stays within
the budget and what it drops are the lowest-scored older tokens."""

from __future__ import annotations

import torch

import mixerlab
from mixerlab.ops.h2o import h2o_attention_parallel, h2o_evict


def _pair(budget: int, recent: int):
    torch.manual_seed(0)
    attention = mixerlab.create_token_mixer("attention", dim=16, num_heads=4).double()
    h2o = mixerlab.create_token_mixer("h2o", dim=16, num_heads=4, budget=budget, recent=recent).double()
    h2o.load_state_dict(attention.state_dict())
    return attention, h2o


def test_budget_covering_the_context_equals_attention_token_for_token():
    attention, h2o = _pair(budget=30, recent=4)
    x = torch.randn(2, 30, 16, dtype=torch.float64)
    y_att, _ = attention(x)
    for mode in h2o.modes:
        h2o.mode = mode
        state, steps = None, []
        for t in range(30):
            y, state = h2o(x[:, t : t + 1], state=state)
            steps.append(y)
        torch.testing.assert_close(torch.cat(steps, 1), y_att)
        torch.testing.assert_close(h2o(x)[0], y_att)  # prefill is full attention


def test_small_budget_bounds_the_state_and_evicts_the_lowest_scores():
    attention, h2o = _pair(budget=6, recent=2)
    x = torch.randn(1, 20, 16, dtype=torch.float64)
    y_att, _ = attention(x)
    _, state = h2o(x[:, :4])
    steps = []
    for t in range(4, 20):
        previous = state
        y, state = h2o(x[:, t : t + 1], state=state)
        steps.append(y)
        assert state["k"].shape[1] <= 6 and state["score"].shape[1] <= 6
        assert h2o.state_size(t + 1) * 1 == sum(v.numel() for v in state.values())
        if previous["k"].shape[1] + 1 > 6:
            # the scores after this step, before eviction, recomputed from the previous cache
            q, k_new, v_new = h2o._project(x[:, t : t + 1])
            q, k_new = h2o._rotate(q, k_new, t)
            keys = torch.cat([previous["k"], k_new], 1)
            _, received = h2o_attention_parallel(q, keys, torch.cat([previous["v"], v_new], 1))
            score = torch.cat([previous["score"], torch.zeros(1, 1, 4, dtype=torch.float64)], 1) + received
            older = score[:, :-2]  # the 2 newest are always kept
            for h in range(4):
                kept = [any(torch.equal(keys[0, s, h], c) for c in state["k"][0, :, h]) for s in range(5)]
                dropped = [s for s in range(5) if not kept[s]]
                assert len(dropped) == 1
                assert older[0, dropped[0], h] == older[0, :, h].min()
    y_steps = torch.cat(steps, 1)
    assert not torch.allclose(y_steps, y_att[:, 4:])  # eviction changed later outputs


def test_evict_keeps_recent_and_heavy_hitters_in_order():
    k = torch.arange(8, dtype=torch.float64).reshape(1, 8, 1, 1)
    score = torch.tensor([5.0, 0.1, 3.0, 0.2, 4.0, 0.0, 0.0, 0.0], dtype=torch.float64).reshape(1, 8, 1)
    kk, vv, ss = h2o_evict(k, k.clone(), score, budget=5, recent=2)
    assert kk.flatten().tolist() == [0.0, 2.0, 4.0, 6.0, 7.0]
    assert ss.flatten().tolist() == [5.0, 3.0, 4.0, 0.0, 0.0]
