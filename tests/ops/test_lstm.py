"""LSTM: fused kernel and one step against the per-token loop and against torch.nn.LSTM."""

from __future__ import annotations

import torch

from mixerlab.ops.lstm import lstm_fused, lstm_recurrent, lstm_reference


def _params(D: int = 5, H: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(4 * H, D), (4 * H, H), (4 * H,), (4 * H,)]
    return [torch.randn(*s, generator=gen, dtype=torch.float64).requires_grad_() for s in shapes]


def test_fused_matches_reference_with_state_and_gradients():
    params = _params()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 13, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    h0, c0 = (torch.randn(2, 3, generator=gen, dtype=torch.float64) for _ in range(2))
    out, (h, c) = lstm_fused(x, *params, state=(h0, c0))
    out_ref, (h_ref, c_ref) = lstm_reference(x, *params, state=(h0, c0))
    for a, b in ((out, out_ref), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(a, b)
    go = torch.randn_like(out)
    grads = torch.autograd.grad((out * go).sum() + c.sum(), [x, *params])
    grads_ref = torch.autograd.grad((out_ref * go).sum() + c_ref.sum(), [x, *params])
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)


def test_reference_equals_torch_nn_lstm_and_steps_equal_one_call():
    params = _params()
    lstm = torch.nn.LSTM(5, 3, batch_first=True).double()
    with torch.no_grad():
        for p, q in zip((lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0), params):
            p.copy_(q)
    x = torch.randn(2, 9, 5, dtype=torch.float64)
    out_ref, (h_ref, c_ref) = lstm_reference(x, *params)
    out_nn, (h_nn, c_nn) = lstm(x)
    torch.testing.assert_close(out_ref, out_nn)
    torch.testing.assert_close(c_ref, c_nn[0])
    state, outs = None, []
    for t in range(9):
        o, state = lstm_recurrent(x[:, t : t + 1], *params, state=state)
        outs.append(o)
    torch.testing.assert_close(torch.cat(outs, dim=1), out_ref)
    torch.testing.assert_close(state[1], c_ref)
