"""minGRU / minLSTM: the log-space scan and one step against the per-token loop, closed forms."""

from __future__ import annotations

import pytest
import torch

from mixerlab.ops.min_rnn import (
    log_space_scan,
    mingru_recurrent,
    mingru_reference,
    mingru_scan,
    minlstm_recurrent,
    minlstm_reference,
    minlstm_scan,
)
from mixerlab.ops.min_rnn.reference import g
from mixerlab.ops.min_rnn.scan import log_g

OPS = {
    "mingru": (mingru_reference, mingru_scan, mingru_recurrent, 2),
    "minlstm": (minlstm_reference, minlstm_scan, minlstm_recurrent, 3),
}


def _inputs(n: int, T: int = 21, batch: int = 2, H: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    pre = [3 * torch.randn(batch, T, H, generator=gen, dtype=torch.float64) for _ in range(n)]
    h0 = torch.randn(batch, H, generator=gen, dtype=torch.float64)  # either sign: enters linearly
    return [t.requires_grad_() for t in (*pre, h0)]


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("chunk_size", [1, 5, 8, 64])
@pytest.mark.parametrize("with_state", [False, True])
def test_scan_matches_reference(name, chunk_size, with_state):
    reference, scan, _, n = OPS[name]
    *pre, h0 = inputs = _inputs(n)
    h0 = h0 if with_state else None
    h, last = scan(*pre, state=h0, chunk_size=chunk_size)
    h_ref, last_ref = reference(*pre, state=h0)
    torch.testing.assert_close(h, h_ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(last, last_ref, rtol=1e-9, atol=1e-10)
    gh = torch.randn_like(h)
    wrt = inputs if with_state else inputs[:-1]
    grads = torch.autograd.grad((h * gh).sum(), wrt)
    grads_ref = torch.autograd.grad((h_ref * gh).sum(), wrt)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", sorted(OPS))
def test_steps_match_one_call(name):
    _, scan, step, n = OPS[name]
    *pre, _ = _inputs(n, T=6)
    h, last = scan(*pre, chunk_size=4)
    state, hs = None, []
    for t in range(6):
        ht, state = step(*(p[:, t : t + 1] for p in pre), state=state)
        hs.append(ht)
    torch.testing.assert_close(torch.cat(hs, dim=1), h)
    torch.testing.assert_close(state, last)


def test_log_g_is_log_of_g_and_g_is_continuous_positive():
    v = torch.linspace(-30, 30, 2001, dtype=torch.float64)
    assert (g(v) > 0).all()
    torch.testing.assert_close(log_g(v), torch.log(g(v)))
    torch.testing.assert_close(g(torch.tensor(0.0)), torch.sigmoid(torch.tensor(0.0)))  # both sides 0.5


def test_mingru_closed_form_constant_gate():
    # constant z and candidate c: h_t = (1-z)^t h0 + (1 - (1-z)^t) g(c)
    T, kz, kh, h0 = 12, 0.7, -1.3, 2.5
    k_z = torch.full((1, T, 1), kz, dtype=torch.float64)
    k_h = torch.full_like(k_z, kh)
    h, _ = mingru_scan(k_z, k_h, state=torch.full((1, 1), h0, dtype=torch.float64), chunk_size=5)
    keep = 1 - torch.sigmoid(torch.tensor(kz, dtype=torch.float64))
    t = torch.arange(1, T + 1, dtype=torch.float64)
    expected = keep**t * h0 + (1 - keep**t) * g(torch.tensor(kh, dtype=torch.float64))
    torch.testing.assert_close(h[0, :, 0], expected)


def test_minlstm_normalised_gates_keep_a_constant_candidate_fixed():
    # f' + i' = 1, so a state equal to a constant candidate stays there whatever the gates
    *pre, _ = _inputs(3, T=15)
    k_h = torch.full_like(pre[2], 0.8)
    h, _ = minlstm_scan(pre[0], pre[1], k_h, state=torch.full((2, 4), 1.3, dtype=torch.float64), chunk_size=4)
    torch.testing.assert_close(h, torch.full_like(h, 1.3))


def test_log_space_scan_long_sequence_float32_is_accurate():
    gen = torch.Generator().manual_seed(1)
    log_a = -torch.nn.functional.softplus(3 * torch.randn(1, 4096, 8, generator=gen))
    log_b = torch.randn(1, 4096, 8, generator=gen)
    h, _ = log_space_scan(log_a, log_b, chunk_size=256)
    h_ref, _ = log_space_scan(log_a.double(), log_b.double(), chunk_size=1)
    torch.testing.assert_close(h.double(), h_ref, rtol=1e-4, atol=1e-6)
