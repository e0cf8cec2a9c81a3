"""Every token mixer trains in bfloat16 on the CPU: forward and backward run, stay finite, and
follow the float32 layer (same weights) to bfloat16 accuracy, with and without an incoming state.
The same checks run on CUDA where present (the ``device`` fixture, tests/conftest.py), where the
fast modes may run on an accelerated backend's kernels (mixerlab.ops.backends).

bfloat16 keeps 8 bits of mantissa, so a mixer that (say) solved a triangular system or took an
FFT in bfloat16 would either fail on the CPU or drift far from float32; both are caught here.
"""

from __future__ import annotations

import pytest
import torch

import mixerlab
from mixerlab.registry import TOKEN_MIXERS

NAMES = mixerlab.list_token_mixers()


def _pair(name: str, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    fp32 = mixerlab.create_token_mixer(name, **TOKEN_MIXERS.entry(name).test_kwargs)
    bf16 = mixerlab.create_token_mixer(name, **TOKEN_MIXERS.entry(name).test_kwargs)
    bf16.load_state_dict(fp32.state_dict())
    return fp32.to(device), bf16.to(device, torch.bfloat16)


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.float() - expected).norm() / expected.norm().clamp_min(1e-12)).item()


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_forward_backward_follow_float32(name, device):
    fp32, bf16 = _pair(name, device)
    x = torch.randn(2, 33, fp32.dim, generator=torch.Generator().manual_seed(1)).to(device)
    x32 = x.clone().requires_grad_()
    x16 = x.to(torch.bfloat16).requires_grad_()
    y32, _ = fp32(x32)
    y16, state16 = bf16(x16)
    assert y16.dtype == torch.bfloat16
    # a recurrence may keep its state in float32 (ops/precision.py); never in float64 or an int
    assert all(t.dtype in (torch.bfloat16, torch.float32) for t in state16.values()), state16
    y32.square().sum().backward()
    y16.float().square().sum().backward()
    assert torch.isfinite(y16).all() and torch.isfinite(x16.grad).all()
    # bf16 rounds every operand to ~3 significant digits; 5% relative (norm) error is ~10x that
    assert _relative_error(y16, y32) < 0.05, f"output off by {_relative_error(y16, y32):.3f}"
    assert _relative_error(x16.grad, x32.grad) < 0.1, (
        f"input grad off by {_relative_error(x16.grad, x32.grad):.3f}"
    )


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_continues_from_a_state(name, device):
    fp32, bf16 = _pair(name, device)
    if not fp32.causal:
        pytest.skip(f"{name} is non-causal only (an image mixer): no state to continue from")
    x = torch.randn(2, 20, fp32.dim, generator=torch.Generator().manual_seed(2)).to(device)
    with torch.no_grad():
        y32, _ = fp32(x)
        _, state = bf16(x[:, :13].to(torch.bfloat16))
        y16_tail, _ = bf16(x[:, 13:].to(torch.bfloat16), state=state)
        _, s = bf16(x[:, 13:14].to(torch.bfloat16), state=state)  # one decoding step
    assert torch.isfinite(y16_tail).all() and all(torch.isfinite(t.float()).all() for t in s.values())
    assert _relative_error(y16_tail, y32[:, 13:]) < 0.05
