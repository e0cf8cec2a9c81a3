"""nsa: each gated branch alone is the attention it is built from."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.ops.nsa import nsa_parallel, nsa_reference


def _only(branch: int, **kwargs):
    """An nsa layer whose gates open ``branch`` (0 compressed, 1 selected, 2 window) only."""
    torch.manual_seed(0)
    nsa = mixerlab.create_token_mixer("nsa", dim=16, num_heads=4, **kwargs).double()
    with torch.no_grad():
        nsa.gate_proj.weight.zero_()
        bias = torch.full((4, 3), -80.0, dtype=torch.float64)
        bias[:, branch] = 80.0
        nsa.gate_proj.bias.copy_(bias.flatten())  # sigmoid(+-80) is 1 or 0 in float64
    return nsa


def test_selection_covering_every_block_is_attention():
    nsa = _only(1, block_size=3, num_selected=20, window=4)
    attention = mixerlab.create_token_mixer("attention", dim=16, num_heads=4).double()
    attention.load_state_dict(nsa.state_dict(), strict=False)
    x = torch.randn(2, 23, 16, dtype=torch.float64)
    for mode in nsa.modes:
        nsa.mode = mode
        torch.testing.assert_close(nsa(x)[0], attention(x)[0])


def test_window_branch_is_sliding_window_attention():
    nsa = _only(2, block_size=4, num_selected=1, window=5)
    local = mixerlab.create_token_mixer("sliding_window", dim=16, num_heads=4, window=5).double()
    local.load_state_dict(nsa.state_dict(), strict=False)
    x = torch.randn(2, 23, 16, dtype=torch.float64)
    for mode in nsa.modes:
        nsa.mode = mode
        torch.testing.assert_close(nsa(x)[0], local(x)[0])


def test_compressed_branch_reads_only_complete_blocks():
    nsa = _only(0, block_size=4, num_selected=1, window=5)
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    for mode in nsa.modes:
        nsa.mode = mode
        y, _ = nsa(x)
        # before the first block is complete there is nothing to read: the output is o_proj(0)
        torch.testing.assert_close(y[:, :3], torch.zeros_like(y[:, :3]))
        assert y[:, 3:].abs().amax() > 0
        x2 = x.clone()
        x2[:, 5] += 1.0  # position 5 joins a compressed key at the block ending at position 7
        y2, _ = nsa(x2)
        torch.testing.assert_close(y2[:, :7], y[:, :7])
        assert not torch.allclose(y2[:, 7:], y[:, 7:])


# (Tk, Tq, block_size): one call, a cached continuation, one decoding step, odd lengths, lengths
# shorter than one block and exact multiples of it
SHAPES = [(13, 13, 4), (13, 5, 4), (13, 1, 4), (16, 16, 4), (3, 3, 4), (5, 1, 8), (33, 33, 8)]


def _cached_inputs(Tk: int, Tq: int, block_size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, Tq, 3, 5, generator=g, dtype=torch.float64)
    k = torch.randn(2, Tk, 3, 5, generator=g, dtype=torch.float64)
    v = torch.randn(2, Tk, 3, 4, generator=g, dtype=torch.float64)
    gates = torch.rand(2, Tq, 3, 3, generator=g, dtype=torch.float64)
    compress_k, compress_v = (torch.randn(3, block_size, generator=g, dtype=torch.float64) for _ in range(2))
    return q, k, v, gates, compress_k, compress_v


@pytest.mark.parametrize(("Tk", "Tq", "block_size"), SHAPES)
def test_parallel_equals_reference_with_a_cache_and_short_lengths(Tk, Tq, block_size):
    args = _cached_inputs(Tk, Tq, block_size)
    for num_selected in (1, 2, 5):
        options = {"block_size": block_size, "num_selected": num_selected, "window": 3}
        torch.testing.assert_close(
            nsa_parallel(*args, **options), nsa_reference(*args, **options), rtol=1e-12, atol=1e-12
        )


def test_compiled_as_one_graph_with_a_cache_equals_eager():
    # the number of blocks a query may pick comes from shapes, so no graph break with a cache
    # (one decoding step) nor below one block (the registry-wide test_compile covers one call)
    torch._dynamo.reset()
    compiled = torch.compile(nsa_parallel, backend="aot_eager", fullgraph=True, dynamic=False)
    for Tk, Tq, block_size in [(13, 1, 4), (3, 3, 4)]:
        args = _cached_inputs(Tk, Tq, block_size, seed=1)
        options = {"block_size": block_size, "num_selected": 2, "window": 3}
        torch.testing.assert_close(
            compiled(*args, **options), nsa_parallel(*args, **options), rtol=1e-12, atol=1e-12
        )
