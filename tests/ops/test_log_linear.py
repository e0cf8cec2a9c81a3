"""Log-linear Mamba-2 op: the Fenwick buckets, the per-step loop against the definition, the
chunked form against the loop (outputs, bucket states, gradients, continuation)."""

from __future__ import annotations

import pytest
import torch

from mixerlab.ops.log_linear import bucket_level, log_linear_chunk, log_linear_reference, num_levels_after

Bsz, T, H, P, N, L = 2, 37, 2, 3, 4, 8


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(Bsz, T, H, P, generator=g, dtype=torch.float64)
    dt = torch.rand(Bsz, T, H, generator=g, dtype=torch.float64)
    A = -torch.rand(H, generator=g, dtype=torch.float64)
    B_, C_ = (torch.randn(Bsz, T, N, generator=g, dtype=torch.float64) for _ in range(2))
    lam = torch.rand(Bsz, T, H, L, generator=g, dtype=torch.float64)
    return x, dt, A, B_, C_, lam


@pytest.mark.parametrize("t", [0, 1, 6, 12, 31, 36])
def test_buckets_partition_the_prefix_into_dyadic_blocks(t):
    levels = [bucket_level(t, s) for s in range(t + 1)]
    assert levels[t] == 0 and levels.count(0) == 1
    used = sorted(set(levels) - {0})
    assert len(used) == bin(t).count("1")  # one bucket per set bit of t: O(log t) buckets
    for level in used:
        members = [s for s in range(t + 1) if levels[s] == level]
        assert len(members) == 2 ** (level - 1) and members == list(range(members[0], members[-1] + 1))
        assert (t >> (level - 1)) & 1  # bucket l exists exactly when bit l-1 of t is set
    assert num_levels_after(t + 1) == max(levels) + 1  # the state holds exactly the levels in use


def test_reference_is_the_definition():
    """``y_t = sum_{s<=t} lambda_t^(l(t,s)) exp(sum_{r=s+1..t} dt_r A) (C_t . B_s) dt_s x_s``."""
    x, dt, A, B_, C_, lam = _inputs()
    y, _ = log_linear_reference(x, dt, A, B_, C_, lam)
    cum = (dt * A).cumsum(1)
    for t in (0, 5, 16, T - 1):
        expected = torch.zeros(Bsz, H, P, dtype=torch.float64)
        for s in range(t + 1):
            w = (cum[:, t] - cum[:, s]).exp() * lam[:, t, :, bucket_level(t, s)]
            expected += (w * (C_[:, t] * B_[:, s]).sum(-1)[:, None])[..., None] * dt[:, s, :, None] * x[:, s]
        torch.testing.assert_close(y[:, t], expected)


@pytest.mark.parametrize("chunk_size", [1, 5, 16, 64])
def test_chunk_matches_reference_outputs_states_and_gradients(chunk_size):
    tensors = [t.requires_grad_() for t in _inputs()]
    y_ref, s_ref = log_linear_reference(*tensors)
    y, s = log_linear_chunk(*tensors, chunk_size=chunk_size)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(s, s_ref)
    g = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad(y, tensors, g), torch.autograd.grad(y_ref, tensors, g)):
        torch.testing.assert_close(a, b)


def test_continuing_from_buckets_at_a_position():
    x, dt, A, B_, C_, lam = _inputs()
    y_ref, s_ref = log_linear_reference(x, dt, A, B_, C_, lam)
    cut = 13
    head = [t[:, :cut] for t in (x, dt)] + [A] + [t[:, :cut] for t in (B_, C_, lam)]
    tail = [t[:, cut:] for t in (x, dt)] + [A] + [t[:, cut:] for t in (B_, C_, lam)]
    y1, s1 = log_linear_reference(*head)
    assert s1.shape[1] == num_levels_after(cut) == 5  # bit_length(12) + 1: grows as log2 T
    y2, s2 = log_linear_chunk(*tail, states=s1, position=cut, chunk_size=6)
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y_ref)
    torch.testing.assert_close(s2, s_ref)


def test_unit_level_weights_are_mamba2():
    from mixerlab.ops.ssd import ssd_reference

    x, dt, A, B_, C_, _ = _inputs()
    ones = torch.ones(Bsz, T, H, L, dtype=torch.float64)
    y, s = log_linear_chunk(x, dt, A, B_, C_, ones, chunk_size=8)
    y_ssd, h = ssd_reference(x, dt, A, B_, C_)
    torch.testing.assert_close(y, y_ssd)
    torch.testing.assert_close(s.sum(1), h)  # the buckets split Mamba-2's one state
