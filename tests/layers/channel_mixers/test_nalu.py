"""NAC adds exactly with saturated weights; NALU multiplies through its log-space path; NAC learns
addition of two inputs from data."""

from __future__ import annotations

import torch

import mixerlab


def test_saturated_nac_adds_and_subtracts():
    nac = mixerlab.create_channel_mixer("nac", dim=3).double()
    with torch.no_grad():
        nac.weight.w_hat.copy_(torch.tensor([[30.0, 30.0, 0], [30.0, -30.0, 0], [0, 0, 0]]))
        nac.weight.m_hat.copy_(torch.tensor([[30.0, 30.0, -30], [30.0, 30.0, -30], [-30, -30, -30]]))
    x = torch.randn(5, 3, dtype=torch.float64) * 100
    y = nac(x)
    torch.testing.assert_close(y[:, 0], x[:, 0] + x[:, 1])
    torch.testing.assert_close(y[:, 1], x[:, 0] - x[:, 1])


def test_nalu_multiplies_when_gate_closed():
    nalu = mixerlab.create_channel_mixer("nalu", dim=2, eps=1e-12).double()
    with torch.no_grad():
        nalu.weight.w_hat.fill_(30.0)
        nalu.weight.m_hat.fill_(30.0)
        nalu.gate.weight.fill_(0.0)
    x = torch.rand(6, 2, dtype=torch.float64) + 0.5
    g = 0.5  # sigmoid(0)
    expected = g * (x[:, 0] + x[:, 1]) + (1 - g) * x[:, 0] * x[:, 1]
    torch.testing.assert_close(nalu(x)[:, 0], expected)


def test_nac_learns_addition():
    torch.manual_seed(0)
    nac = mixerlab.create_channel_mixer("nac", dim=2)
    opt = torch.optim.Adam(nac.parameters(), lr=0.05)
    for _ in range(300):
        x = torch.rand(64, 2) * 2 - 1
        loss = (nac(x)[:, 0] - x.sum(-1)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.rand(100, 2) * 200 - 100  # extrapolation far outside the training range
    rel = ((nac(x)[:, 0] - x.sum(-1)).abs() / x.sum(-1).abs().clamp(min=1)).median()
    assert rel < 0.05
