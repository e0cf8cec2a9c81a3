"""ops/kda: Kimi Delta Attention's chunked form against its own per-step reference and its parent."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixerlab.ops.delta_rule import delta_rule_reference
from mixerlab.ops.kda import kda_chunk, kda_recurrent, kda_reference

B, T, H, K, V = 2, 19, 2, 6, 4


def inputs():
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    q, k, v = rand(B, T, H, K), F.normalize(rand(B, T, H, K), dim=-1), rand(B, T, H, V)
    decay = -3.0 * torch.sigmoid(rand(B, T, H, K))
    beta = 2.0 * torch.sigmoid(rand(B, T, H))  # negative eigenvalues allowed
    return q, k, v, decay, beta, rand(B, H, K, V)


@pytest.mark.parametrize("chunk_size", [1, 5, 16])
def test_chunk_matches_reference_outputs_and_gradients(chunk_size):
    leaves = tuple(t.requires_grad_() for t in inputs())
    q, k, v, decay, beta, state = leaves
    y_ref, s_ref = kda_reference(q, k, v, decay, beta, state=state)
    y, s = kda_chunk(q, k, v, decay, beta, state=state, chunk_size=chunk_size)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(s, s_ref)
    gy = torch.randn_like(y)
    grads_ref = torch.autograd.grad((y_ref * gy).sum() + s_ref.sum(), leaves)
    grads = torch.autograd.grad((y * gy).sum() + s.sum(), leaves)
    for got, want in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, want)


def test_recurrent_steps_match_reference():
    q, k, v, decay, beta, state = inputs()
    y_ref, s_ref = kda_reference(q, k, v, decay, beta, state=state)
    s = state
    for t in range(T):
        y, s = kda_recurrent(q[:, t], k[:, t], v[:, t], decay[:, t], beta[:, t], s)
        torch.testing.assert_close(y, y_ref[:, t])
    torch.testing.assert_close(s, s_ref)


def test_decay_equal_across_channels_is_the_gated_delta_rule():
    # KDA's only change to Gated DeltaNet is the per-channel decay: a shared one gives it back
    q, k, v, decay, beta, state = inputs()
    scalar = decay[..., 0]
    y, s = kda_chunk(q, k, v, scalar[..., None].expand_as(k), beta, state=state, chunk_size=5)
    y_gdn, s_gdn = delta_rule_reference(q, k, v, beta, scalar, state=state)
    torch.testing.assert_close(y, y_gdn)
    torch.testing.assert_close(s, s_gdn)
