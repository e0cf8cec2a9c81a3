"""FoX specifics: an open forget gate is softmax attention, a closed one reads only the current token."""

from __future__ import annotations

import torch

import mixerlab


def _pair():
    torch.manual_seed(0)
    fox = mixerlab.create_token_mixer("fox", dim=8, num_heads=2).double()
    attn = mixerlab.create_token_mixer("attention", dim=8, num_heads=2, rotary_base=None).double()
    attn.load_state_dict({k: v for k, v in fox.state_dict().items() if not k.startswith("forget")})
    return fox, attn


def test_open_forget_gate_is_softmax_attention_without_positions():
    fox, attn = _pair()
    with torch.no_grad():
        fox.forget_proj.weight.zero_()
        fox.forget_proj.bias.fill_(60.0)  # log sigmoid(60) ~ -1e-26
    x = torch.randn(2, 13, 8, dtype=torch.float64)
    torch.testing.assert_close(fox(x)[0], attn(x)[0])


def test_closed_forget_gate_reads_only_the_current_token():
    fox, _ = _pair()
    with torch.no_grad():
        fox.forget_proj.weight.zero_()
        fox.forget_proj.bias.fill_(-60.0)  # every earlier key is forgotten
    x = torch.randn(2, 13, 8, dtype=torch.float64)
    v = fox.kv_proj(x)[..., 8:]  # the value half of the projection
    torch.testing.assert_close(fox(x)[0], fox.o_proj(v))


def test_cache_grows_with_the_context():
    fox, _ = _pair()
    x = torch.randn(1, 9, 8, dtype=torch.float64)
    _, state = fox(x)
    assert state["k"].shape[1] == state["log_f"].shape[1] == 9
    assert fox.state_size(18) == 2 * fox.state_size(9)
