"""Mamba-2 SSD: chunked and one-step forms against the per-step reference, and the duality."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixerlab.ops.ssd import ssd_chunk, ssd_recurrent, ssd_reference

Bsz, T, H, P, N = 2, 29, 3, 4, 5


def make_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    x = rand(Bsz, T, H, P)
    dt = F.softplus(rand(Bsz, T, H))
    A = -torch.rand(H, generator=g, dtype=torch.float64) * 4
    return x, dt, A, rand(Bsz, T, N), rand(Bsz, T, N), rand(Bsz, H, P, N)


@pytest.mark.parametrize("chunk_size", [1, 4, 8, 64])
def test_chunk_matches_reference_outputs_states_and_gradients(chunk_size):
    inputs = [t.requires_grad_() for t in make_inputs()]
    x, dt, A, B_, C_, h0 = inputs
    y_ref, h_ref = ssd_reference(x, dt, A, B_, C_, state=h0)
    y, h = ssd_chunk(x, dt, A, B_, C_, state=h0, chunk_size=chunk_size)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(h, h_ref, rtol=1e-9, atol=1e-10)
    w_y, w_h = torch.randn_like(y), torch.randn_like(h)
    grads_ref = torch.autograd.grad((y_ref * w_y).sum() + (h_ref * w_h).sum(), inputs)
    grads = torch.autograd.grad((y * w_y).sum() + (h * w_h).sum(), inputs)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def test_recurrent_steps_match_reference():
    x, dt, A, B_, C_, h0 = make_inputs(seed=1)
    y_ref, h_ref = ssd_reference(x, dt, A, B_, C_, state=h0)
    h, ys = h0, []
    for t in range(T):
        y, h = ssd_recurrent(x[:, t], dt[:, t], A, B_[:, t], C_[:, t], h)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), y_ref)
    torch.testing.assert_close(h, h_ref)


def test_duality_with_the_materialised_semiseparable_matrix():
    """From a zero state, ``y = M (dt x)`` with ``M_ts = C_t.B_s exp(sum_{s<r<=t} dt_r A)`` (sec. 3)."""
    x, dt, A, B_, C_, _ = make_inputs(seed=2)
    logdec = (dt * A).cumsum(1)  # [B, T, H]
    seg = logdec[:, :, None] - logdec[:, None, :]  # [B, t, s, H]
    causal = torch.ones(T, T, dtype=torch.bool).tril()[None, :, :, None]
    M = torch.einsum("btn,bsn->bts", C_, B_)[..., None] * torch.exp(seg.masked_fill(~causal, float("-inf")))
    expected = torch.einsum("btsh,bshp->bthp", M, x * dt[..., None])
    y, _ = ssd_chunk(x, dt, A, B_, C_, chunk_size=8)
    torch.testing.assert_close(y, expected)


def test_zero_input_decays_the_state_by_exp_sum_dt_A():
    x, dt, A, B_, C_, h0 = make_inputs(seed=3)
    _, h = ssd_chunk(torch.zeros_like(x), dt, A, B_, C_, state=h0, chunk_size=8)
    torch.testing.assert_close(h, h0 * torch.exp(dt.sum(1) * A)[..., None, None])
