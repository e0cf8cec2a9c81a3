"""ops/comba: Comba's chunked form against its own per-step reference and the gated delta rule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixerlab.ops.comba import comba_chunk, comba_recurrent, comba_reference
from mixerlab.ops.delta_rule import delta_rule_reference

B, T, H, K, V = 2, 19, 2, 6, 4


def inputs():
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    q, k, v = rand(B, T, H, K), F.normalize(rand(B, T, H, K), dim=-1), rand(B, T, H, V)
    p = 0.6 * k + 0.2 * rand(B, T, H, K)
    beta, decay = torch.sigmoid(rand(B, T, H)), -torch.rand(B, T, H, generator=g, dtype=torch.float64)
    return q, k, v, p, beta, decay, rand(B, H, K, V)


@pytest.mark.parametrize("chunk_size", [1, 5, 16])
def test_chunk_matches_reference_outputs_and_gradients(chunk_size):
    leaves = tuple(t.requires_grad_() for t in inputs())
    y_ref, s_ref = comba_reference(*leaves[:-1], state=leaves[-1])
    y, s = comba_chunk(*leaves[:-1], state=leaves[-1], chunk_size=chunk_size)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(s, s_ref)
    gy = torch.randn_like(y)
    grads_ref = torch.autograd.grad((y_ref * gy).sum() + s_ref.sum(), leaves)
    grads = torch.autograd.grad((y * gy).sum() + s.sum(), leaves)
    for got, want in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, want)


def test_recurrent_steps_match_reference():
    q, k, v, p, beta, decay, state = inputs()
    y_ref, s_ref = comba_reference(q, k, v, p, beta, decay, state=state)
    s = state
    for t in range(T):
        y, s = comba_recurrent(q[:, t], k[:, t], v[:, t], p[:, t], beta[:, t], decay[:, t], s)
        torch.testing.assert_close(y, y_ref[:, t])
    torch.testing.assert_close(s, s_ref)


def test_read_key_equal_to_write_key_is_the_gated_delta_rule():
    q, k, v, _, beta, decay, state = inputs()
    y, s = comba_chunk(q, k, v, k, beta, decay, state=state, chunk_size=5)
    y_gdn, s_gdn = delta_rule_reference(q, k, v, beta, decay, state=state)
    torch.testing.assert_close(y, y_gdn)
    torch.testing.assert_close(s, s_gdn)
