"""Stick-breaking specifics: order matters with no position embedding; a sure first break
reads the current token."""

from __future__ import annotations

import torch

import mixerlab


def test_order_of_earlier_tokens_matters_without_positions():
    """Softmax attention without positions is blind to the order of earlier tokens; stick-breaking
    is not (the nearest key breaks the stick first)."""
    torch.manual_seed(0)
    sb = mixerlab.create_token_mixer("stick_breaking", dim=8, num_heads=2).double()
    attn = mixerlab.create_token_mixer("attention", dim=8, num_heads=2, rotary_base=None).double()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    x_perm = torch.cat([x[:, :8].flip(1), x[:, 8:]], dim=1)  # earlier tokens reversed, last kept
    torch.testing.assert_close(attn(x_perm)[0][:, -1], attn(x)[0][:, -1])
    assert not torch.allclose(sb(x_perm)[0][:, -1], sb(x)[0][:, -1])


def test_sure_first_break_reads_only_the_current_token():
    """Queries and keys equal and large: ``beta_ii ~ 1`` takes the whole stick at the current token."""
    torch.manual_seed(0)
    sb = mixerlab.create_token_mixer("stick_breaking", dim=8, num_heads=2).double()
    with torch.no_grad():
        sb.q_proj.weight.copy_(30 * torch.eye(8, dtype=torch.float64))
        sb.kv_proj.weight[:8].copy_(30 * torch.eye(8, dtype=torch.float64))
    x = torch.nn.functional.normalize(torch.randn(2, 7, 8, dtype=torch.float64), dim=-1) * 2.0
    v = sb.kv_proj(x)[..., 8:]
    torch.testing.assert_close(sb(x)[0], sb.o_proj(v), atol=1e-6, rtol=1e-6)
