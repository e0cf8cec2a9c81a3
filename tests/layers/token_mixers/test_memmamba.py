"""memmamba (arXiv:2510.03279): with the pool off it is Mamba with the same weights; its state stays
the same size however long the input, and its pool holds exactly the last P salient notes; the
pool path follows float32 in bfloat16 when no token sits at the threshold; bad options are errors."""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.errors import ConfigError

SIZES = {"dim": 16, "expand": 2, "state_dim": 4, "conv_size": 4, "chunk_size": 8}


def _x(T: int = 37, seed: int = 1, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(2, T, 16, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("pool_size", [0, 6])
def test_without_a_pool_read_it_equals_mamba_with_the_same_weights(pool_size):
    torch.manual_seed(0)
    mamba = mixerlab.create_token_mixer("mamba", **SIZES).double()
    torch.manual_seed(1)
    mem = mixerlab.create_token_mixer("memmamba", **SIZES, pool_size=pool_size, num_heads=2).double()
    # pool_size=0 has Mamba's parameters exactly; otherwise the read-out starts at zero
    missing, unexpected = mem.load_state_dict(mamba.state_dict(), strict=pool_size == 0)
    assert not unexpected
    x = _x()
    y_ref, s_ref = mamba(x)
    for mode in mem.modes:
        mem.mode = mode
        y, s = mem(x)
        torch.testing.assert_close(y, y_ref)
        torch.testing.assert_close(s["ssm"], s_ref["ssm"])
    if pool_size:  # the pool is in use, only its read-out is zero: a non-zero one changes the output
        with torch.no_grad():
            mem.note_out.weight.normal_()
        assert not torch.allclose(mem(x)[0], y_ref)


def test_state_is_bounded_and_holds_the_last_salient_notes():
    P = 4
    torch.manual_seed(0)
    mem = mixerlab.create_token_mixer("memmamba", **SIZES, pool_size=P, num_heads=2, head_dim=3).double()
    sizes = set()
    for T in (1, 3, 40, 200):
        x = _x(T, seed=T)
        _, state = mem(x)
        sizes.add(sum(t[0].numel() for t in state.values()))
        assert sizes == {mem.state_size(T)}
        with torch.no_grad():
            logit = mem.saliency(x)[..., 0]
            notes = torch.sigmoid(logit)[..., None] * mem.note_proj(x)
        for b in range(2):
            salient = notes[b][logit[b] > 0]  # threshold 0.5 on the sigmoid
            held = min(P, len(salient))
            assert int(state["filled"][b].sum()) == held
            torch.testing.assert_close(state["notes"][b, P - held :], salient[len(salient) - held :])


def test_bfloat16_pool_read_follows_float32_away_from_the_threshold():
    torch.manual_seed(0)
    fp32 = mixerlab.create_token_mixer("memmamba", **SIZES, pool_size=5, num_heads=2)
    with torch.no_grad():
        fp32.note_out.weight.normal_(0, 0.5)
        fp32.saliency.bias.fill_(4.0)  # every token salient by a wide margin: no rounding flips one
    bf16 = mixerlab.create_token_mixer("memmamba", **SIZES, pool_size=5, num_heads=2)
    bf16.load_state_dict(fp32.state_dict())
    bf16 = bf16.to(torch.bfloat16)
    x = _x(29, dtype=torch.float32)
    with torch.no_grad():
        y32, _ = fp32(x)
        _, state = bf16(x[:, :17].bfloat16())
        tail, _ = bf16(x[:, 17:].bfloat16(), state=state)
    error = ((tail.float() - y32[:, 17:]).norm() / y32[:, 17:].norm()).item()
    assert error < 0.05, error


@pytest.mark.parametrize(
    ("field", "value"), [("pool_size", -1), ("threshold", 1.0), ("head_dim", 0), ("num_heads", 3)]
)
def test_bad_options_are_clear_errors(field, value):
    with pytest.raises(ConfigError, match=field if field != "num_heads" else "dim"):
        mixerlab.create_token_mixer("memmamba", **SIZES, **{field: value})
