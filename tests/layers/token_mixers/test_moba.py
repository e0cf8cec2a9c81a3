"""moba: top-k covering every block is causal attention; otherwise unselected blocks are never read."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.ops.moba import moba_parallel, moba_reference


def test_top_k_covering_every_block_equals_attention_also_while_decoding():
    torch.manual_seed(0)
    attention = mixerlab.create_token_mixer("attention", dim=16, num_heads=4, num_kv_heads=2).double()
    moba = mixerlab.create_token_mixer(
        "moba", dim=16, num_heads=4, num_kv_heads=2, block_size=3, top_k=11
    ).double()
    moba.load_state_dict(attention.state_dict())
    x = torch.randn(2, 31, 16, dtype=torch.float64)
    y_att, _ = attention(x)
    for mode in moba.modes:
        moba.mode = mode
        torch.testing.assert_close(moba(x)[0], y_att)
    _, state = moba(x[:, :20])
    steps = []
    for t in range(20, 31):
        y, state = moba(x[:, t : t + 1], state=state)
        steps.append(y)
    torch.testing.assert_close(torch.cat(steps, 1), y_att[:, 20:])


def _qkv(T: int = 14, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(1, T, 1, 4, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn(1, T, 1, 3, generator=g, dtype=torch.float64)
    return q, k, v


def test_top_k_zero_reads_only_the_own_block():
    q, k, v = _qkv()
    o = moba_parallel(q, k, v, block_size=4, top_k=0)
    for t in range(14):
        start = (t // 4) * 4
        s = (q[0, t, 0] @ k[0, start : t + 1, 0].T) / 2.0
        torch.testing.assert_close(o[0, t, 0], torch.softmax(s, -1) @ v[0, start : t + 1, 0])


def test_the_lowest_gated_blocks_are_never_read():
    q, k, v = _qkv(T=16, seed=3)
    t = 15  # own block 3; earlier blocks 0, 1, 2; top_k = 1 keeps the best one
    means = k[0, :12, 0].reshape(3, 4, 4).mean(1)
    gates = means @ q[0, t, 0]
    best = int(gates.argmax())
    o = moba_reference(q, k, v, block_size=4, top_k=1)
    for j in range(3):
        v2 = v.clone()
        v2[:, 4 * j : 4 * j + 4] += 5.0
        for fn in (moba_reference, moba_parallel):
            changed = not torch.allclose(fn(q, k, v2, block_size=4, top_k=1)[0, t], o[0, t])
            assert changed == (j == best), (j, best, fn.__name__)


# (Tk, Tq, block_size): one call, a cached continuation, one decoding step, odd lengths, lengths
# shorter than one block and exact multiples of it
SHAPES = [(13, 13, 4), (13, 5, 4), (13, 1, 4), (16, 16, 4), (3, 3, 4), (5, 1, 8), (33, 33, 8)]


def _cached_qkv(Tk: int, Tq: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, Tq, 4, 5, generator=g, dtype=torch.float64)
    k = torch.randn(2, Tk, 2, 5, generator=g, dtype=torch.float64)
    v = torch.randn(2, Tk, 2, 3, generator=g, dtype=torch.float64)
    return q, k, v


@pytest.mark.parametrize(("Tk", "Tq", "block_size"), SHAPES)
def test_parallel_equals_reference_with_a_cache_and_short_lengths(Tk, Tq, block_size):
    q, k, v = _cached_qkv(Tk, Tq)
    for top_k in (1, 2, 5):
        expected = moba_reference(q, k, v, block_size=block_size, top_k=top_k)
        actual = moba_parallel(q, k, v, block_size=block_size, top_k=top_k)
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_compiled_as_one_graph_with_a_cache_equals_eager():
    # the number of blocks a query may pick comes from shapes, so no graph break with a cache
    # (one decoding step) nor below one block (the registry-wide test_compile covers one call)
    torch._dynamo.reset()
    compiled = torch.compile(moba_parallel, backend="aot_eager", fullgraph=True, dynamic=False)
    for Tk, Tq, block_size in [(13, 1, 4), (3, 3, 4)]:
        q, k, v = _cached_qkv(Tk, Tq, seed=1)
        torch.testing.assert_close(
            compiled(q, k, v, block_size=block_size, top_k=2),
            moba_parallel(q, k, v, block_size=block_size, top_k=2),
            rtol=1e-12,
            atol=1e-12,
        )
