"""kda specifics beyond the registry-wide contract."""

from __future__ import annotations

import torch

import mixerlab


def make(name: str, **kwargs):
    torch.manual_seed(0)
    return mixerlab.create_token_mixer(name, dim=16, num_heads=2, chunk_size=5, **kwargs).double()


def test_decay_is_per_channel_and_in_the_unit_interval():
    mixer = make("kda")
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    g = mixer._inputs(x, None)[3]
    assert g.shape == (2, 9, 2, 8)
    assert (g <= 0).all()
    assert (g.std(-1) > 0).all()  # channels of one head decay at different rates


def test_head_constant_decay_gives_gated_deltanet_state():
    # copy Gated DeltaNet's weights and route its per-head decay input to every channel of the head:
    # KDA then runs the same recurrence, so the states agree (the output gates differ by design)
    gdn = make("gated_deltanet", expand=1)
    kda = make("kda", expand=1)
    H, K = 2, 8
    with torch.no_grad():
        kda.qkv_proj.weight.copy_(gdn.qkv_proj.weight)
        kda.conv.weight.copy_(gdn.conv.weight)
        kda.b_proj.weight.copy_(gdn.b_proj.weight)
        kda.A_log.copy_(gdn.A_log)
        kda.f_down.weight.zero_()
        kda.f_down.weight[:H].copy_(gdn.a_proj.weight)
        kda.f_up.weight.zero_()
        for h in range(H):
            kda.f_up.weight[h * K : (h + 1) * K, h] = 1.0
        kda.dt_bias.copy_(gdn.dt_bias.repeat_interleave(K))
    x = torch.randn(2, 21, 16, dtype=torch.float64)
    _, s = kda(x)
    _, s_gdn = gdn(x)
    torch.testing.assert_close(s["recurrent"], s_gdn["recurrent"])
