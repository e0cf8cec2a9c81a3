"""ops/deltaproduct: the interleaved chunked form against the per-token reference and the delta rule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixerlab.ops.delta_rule import delta_rule_reference
from mixerlab.ops.deltaproduct import deltaproduct_chunk, deltaproduct_recurrent, deltaproduct_reference

B, T, H, K, V = 2, 13, 2, 5, 3


def inputs(n_h: int):
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    q = rand(B, T, H, K)
    k, v = F.normalize(rand(B, T, n_h, H, K), dim=-1), rand(B, T, n_h, H, V)
    beta, decay = 2.0 * torch.sigmoid(rand(B, T, n_h, H)), -torch.sigmoid(rand(B, T, H))
    return q, k, v, beta, decay, rand(B, H, K, V)


@pytest.mark.parametrize("n_h", [1, 3])
@pytest.mark.parametrize("gated", [True, False])
def test_chunk_matches_reference_outputs_and_gradients(n_h, gated):
    q, k, v, beta, decay, state = (t.requires_grad_() for t in inputs(n_h))
    leaves = (q, k, v, beta, decay, state) if gated else (q, k, v, beta, state)
    g = decay if gated else None
    y_ref, s_ref = deltaproduct_reference(q, k, v, beta, g, state=state)
    y, s = deltaproduct_chunk(q, k, v, beta, g, state=state, chunk_size=7)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(s, s_ref)
    gy = torch.randn_like(y)
    grads_ref = torch.autograd.grad((y_ref * gy).sum() + s_ref.sum(), leaves)
    grads = torch.autograd.grad((y * gy).sum() + s.sum(), leaves)
    for got, want in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, want)


def test_recurrent_steps_match_reference():
    q, k, v, beta, decay, state = inputs(3)
    y_ref, s_ref = deltaproduct_reference(q, k, v, beta, decay, state=state)
    s = state
    for t in range(T):
        y, s = deltaproduct_recurrent(q[:, t], k[:, t], v[:, t], beta[:, t], decay[:, t], s)
        torch.testing.assert_close(y, y_ref[:, t])
    torch.testing.assert_close(s, s_ref)


def test_one_householder_step_is_the_gated_delta_rule():
    q, k, v, beta, decay, state = inputs(1)
    y, s = deltaproduct_reference(q, k, v, beta, decay, state=state)
    y_gdn, s_gdn = delta_rule_reference(q, k[:, :, 0], v[:, :, 0], beta[:, :, 0], decay, state=state)
    torch.testing.assert_close(y, y_gdn)
    torch.testing.assert_close(s, s_gdn)


def test_two_steps_without_gate_or_values_apply_the_product_of_householders():
    # with zero values the state only sees the transition: S_T = S_0 H_{t,1} H_{t,2} ... (paper's S)
    q, k, v, beta, _, state = inputs(2)
    _, s = deltaproduct_chunk(q, k, torch.zeros_like(v), beta, None, state=state, chunk_size=4)
    S = state.transpose(-1, -2)  # [B, H, V, K]
    eye = torch.eye(K, dtype=torch.float64)
    for t in range(T):
        for j in range(2):
            kj = k[:, t, j]
            S = S @ (eye - beta[:, t, j, :, None, None] * kj[..., :, None] * kj[..., None, :])
    torch.testing.assert_close(s, S.transpose(-1, -2))
