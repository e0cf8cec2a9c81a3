"""s2_attention: a query reads its group (shifted for half the heads) and the sinks, nothing else."""

from __future__ import annotations

import torch

import mixerlab
from mixerlab.ops.s2_attention import s2_attention_parallel, s2_attention_reference


def _qkv(T: int = 16, H: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(1, T, H, 4, generator=g, dtype=torch.float64) for _ in range(2))
    return q, k, torch.randn(1, T, H, 3, generator=g, dtype=torch.float64)


def _reads(fn, t: int, h: int, **kw) -> set[int]:
    """The keys whose value changes query ``t`` of head ``h``."""
    q, k, v = _qkv()
    base = fn(q, k, v, **kw)[0, t, h]
    read = set()
    for s in range(16):
        v2 = v.clone()
        v2[0, s] += 3.0
        if not torch.allclose(fn(q, k, v2, **kw)[0, t, h], base):
            read.add(s)
    return read


def test_groups_are_shifted_for_half_the_heads_and_sinks_are_global():
    for fn in (s2_attention_reference, s2_attention_parallel):
        # group_size 4: head 0 groups [0,4) [4,8) [8,12); head 1 groups [-2,2) [2,6) [6,10) [10,14)
        assert _reads(fn, 9, 0, group_size=4, num_sinks=0) == {8, 9}
        assert _reads(fn, 9, 1, group_size=4, num_sinks=0) == {6, 7, 8, 9}
        assert _reads(fn, 9, 0, group_size=4, num_sinks=2) == {0, 1, 8, 9}
        assert _reads(fn, 12, 1, group_size=4, num_sinks=1) == {0, 10, 11, 12}


def test_one_group_covering_the_context_is_attention():
    torch.manual_seed(0)
    attention = mixerlab.create_token_mixer("attention", dim=16, num_heads=4, num_kv_heads=2).double()
    s2 = mixerlab.create_token_mixer(
        "s2_attention", dim=16, num_heads=4, num_kv_heads=2, group_size=40, num_sinks=0
    ).double()
    s2.load_state_dict(attention.state_dict())
    x = torch.randn(2, 19, 16, dtype=torch.float64)
    # the shifted heads' first group is [-20, 20): the whole context too
    torch.testing.assert_close(s2(x)[0], attention(x)[0])
