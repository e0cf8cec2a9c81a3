"""rwkv7 specifics beyond the registry-wide contract."""

from __future__ import annotations

import math

import torch

import mixerlab
import mixerlab.layers.token_mixers.rwkv7 as module


def make(**kwargs):
    torch.manual_seed(0)
    return mixerlab.create_token_mixer(
        "rwkv7", dim=16, num_heads=2, chunk_size=5, low_rank_dim=4, **kwargs
    ).double()


def test_decay_stays_in_the_papers_range(monkeypatch):
    mixer = make()
    with torch.no_grad():
        mixer.w_down.weight.normal_(0, 10.0)  # saturate the sigmoid both ways
        mixer.w_up.weight.normal_(0, 10.0)
    captured = {}
    real = module.rwkv7_chunk

    def spy(r, log_w, *args, **kwargs):
        captured["log_w"] = log_w
        return real(r, log_w, *args, **kwargs)

    monkeypatch.setattr(module, "rwkv7_chunk", spy)
    mixer(torch.randn(2, 30, 16, dtype=torch.float64))
    w = torch.exp(captured["log_w"])
    assert w.min() >= math.exp(-math.exp(-0.5)) - 1e-12 and w.max() <= 1.0
    assert w.min() < 0.6 and w.max() > 0.99  # both ends are reached


def test_token_shift_reads_the_previous_token():
    # with the shift weights at one every stream reads x_{t-1} alone, so the last token changes no
    # output of its own call; it is carried on as the shift state
    mixer = make()
    with torch.no_grad():
        mixer.shift_mix.fill_(1.0)
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    y, state = mixer(x)
    torch.testing.assert_close(state["shift"], x[:, -1])
    x2 = x.clone()
    x2[:, -1] += 1.0
    y2, _ = mixer(x2)
    torch.testing.assert_close(y2[:, -1], y[:, -1])  # the last token only feeds the next step
