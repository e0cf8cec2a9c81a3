"""mLSTM ops: chunkwise and one-step forms against the per-step reference, and the reference
against the unstabilised equations of the paper."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixerlab.ops.mlstm import mlstm_chunk, mlstm_recurrent, mlstm_reference

B, T, H, K, V = 2, 33, 2, 5, 4


def _inputs(seed: int = 0, T: int = T, gate_scale: float = 3.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, B, T, H, K, generator=g, dtype=dtype)
    v = torch.randn(B, T, H, V, generator=g, dtype=dtype)
    log_i = torch.randn(B, T, H, generator=g, dtype=dtype) * gate_scale
    log_f = F.logsigmoid(torch.randn(B, T, H, generator=g, dtype=dtype) * gate_scale)
    return q, k, v, log_i, log_f


def _close(a, b, what):
    torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("chunk_size", [1, 5, 8, 33, 64])
def test_chunk_matches_reference_with_gradients_and_state(chunk_size):
    args = [t.requires_grad_() for t in _inputs()]
    prev = _inputs(seed=1, T=7)
    _, state = mlstm_reference(*prev)  # a non-trivial incoming state
    h_ref, s_ref = mlstm_reference(*args, state=state)
    h, s = mlstm_chunk(*args, state=state, chunk_size=chunk_size)
    _close(h, h_ref, "output")
    for a, b, key in zip(s, s_ref, "Cnm"):
        _close(a, b, f"final {key}")
    g = torch.randn_like(h)
    grads = torch.autograd.grad(h, args, g)
    grads_ref = torch.autograd.grad(h_ref, args, g)
    for a, b, name in zip(grads, grads_ref, ["q", "k", "v", "log_i", "log_f"]):
        _close(a, b, f"d{name}")


def test_recurrent_steps_match_reference():
    q, k, v, log_i, log_f = _inputs()
    h_ref, s_ref = mlstm_reference(q, k, v, log_i, log_f)
    state = (q.new_zeros(B, H, K, V), q.new_zeros(B, H, K), q.new_zeros(B, H))
    hs = []
    for t in range(T):
        h, state = mlstm_recurrent(q[:, t], k[:, t], v[:, t], log_i[:, t], log_f[:, t], state)
        hs.append(h)
    _close(torch.stack(hs, 1), h_ref, "steps")
    for a, b in zip(state, s_ref):
        _close(a, b, "state")


def test_reference_equals_the_unstabilised_paper_equations():
    # With moderate gates the paper's raw recurrence is representable; the stabilised state must
    # equal it scaled by exp(-m), and the outputs must agree (eps = 0 for an exact comparison).
    q, k, v, log_i, log_f = _inputs(gate_scale=1.0)
    h, (C, n, m) = mlstm_reference(q, k, v, log_i, log_f, eps=0.0)
    C_true = q.new_zeros(B, H, K, V)
    n_true = q.new_zeros(B, H, K)
    outs = []
    for t in range(T):
        f, i = log_f[:, t].exp(), log_i[:, t].exp()
        C_true = f[..., None, None] * C_true + i[..., None, None] * torch.einsum(
            "bhk,bhv->bhkv", k[:, t], v[:, t]
        )
        n_true = f[..., None] * n_true + i[..., None] * k[:, t]
        qs = q[:, t] / K**0.5
        den = torch.clamp((n_true * qs).sum(-1).abs(), min=1.0)
        outs.append(torch.einsum("bhkv,bhk->bhv", C_true, qs) / den[..., None])
    _close(h, torch.stack(outs, 1), "outputs vs raw equations")
    _close(C * m.exp()[..., None, None], C_true, "C scaled back by exp(m)")
    _close(n * m.exp()[..., None], n_true, "n scaled back by exp(m)")


def test_large_input_gates_stay_finite_in_float32():
    # exp(80) overflows float32: only the stabilised form survives. Its error against a float64
    # reference must be no worse than the float32 per-step reference's own error.
    q, k, v, log_i, log_f = _inputs(dtype=torch.float32)
    log_i = log_i + 80.0
    h, state = mlstm_chunk(q, k, v, log_i, log_f, chunk_size=8)
    assert torch.isfinite(h).all()
    assert all(torch.isfinite(s).all() for s in state)
    h64, _ = mlstm_reference(*(t.double() for t in (q, k, v, log_i, log_f)))
    h32, _ = mlstm_reference(q, k, v, log_i, log_f)

    def rel(x):
        return ((x.double() - h64).norm() / h64.norm()).item()

    assert rel(h) <= 2 * rel(h32) + 1e-6, f"chunk error {rel(h):.2e} vs float32 reference {rel(h32):.2e}"
