"""Rotary embedding against its definition as complex multiplication, and its gradient."""

from __future__ import annotations

import pytest
import torch

from mixerlab.ops.rotary import rotary, rotary_tables


def _rotary_by_complex_numbers(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """RoFormer eq. 34 read with pairs (x_i, x_{i+K/2}) as complex numbers times e^{i m theta_i}."""
    half = x.shape[-1] // 2
    theta = base ** (-torch.arange(half, dtype=torch.float64) * 2 / (2 * half))
    out = x.clone()
    for t, m in enumerate(positions.tolist()):
        z = torch.complex(x[:, t, :, :half], x[:, t, :, half : 2 * half])
        z = z * torch.polar(torch.ones_like(theta), m * theta)
        out[:, t, :, :half], out[:, t, :, half : 2 * half] = z.real, z.imag
    return out


@pytest.mark.parametrize("K", [8, 7])
def test_rotary_is_a_rotation_of_pairs(K):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 3, K, generator=g, dtype=torch.float64)
    positions = torch.tensor([0, 1, 4, 9, 1000])
    torch.testing.assert_close(rotary(x, positions, 100.0), _rotary_by_complex_numbers(x, positions, 100.0))


def test_scores_depend_only_on_relative_position():
    g = torch.Generator().manual_seed(1)
    q, k = (torch.randn(1, 1, 1, 8, generator=g, dtype=torch.float64) for _ in range(2))

    def score(m: int, n: int) -> torch.Tensor:
        return (rotary(q, torch.tensor([m])) * rotary(k, torch.tensor([n]))).sum()

    torch.testing.assert_close(score(7, 3), score(104, 100))
    assert not torch.allclose(score(7, 3), score(3, 7))


def test_hand_written_backward_matches_autograd_of_the_definition():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 6, 2, 8, generator=g, dtype=torch.float64, requires_grad=True)
    positions = torch.arange(3, 9)
    assert torch.autograd.gradcheck(lambda t: rotary(t, positions), (x,))
    grad = torch.randn(2, 6, 2, 8, generator=g, dtype=torch.float64)
    (ours,) = torch.autograd.grad(rotary(x, positions), x, grad)
    (expected,) = torch.autograd.grad(_rotary_by_complex_numbers(x, positions, 10000.0), x, grad)
    torch.testing.assert_close(ours, expected)


def test_shared_tables_equal_fresh_ones():
    x = torch.randn(1, 4, 2, 6)
    positions = torch.arange(10, 14)
    tables = rotary_tables(positions, 6, x.dtype)
    torch.testing.assert_close(rotary(x, positions, tables=tables), rotary(x, positions))
