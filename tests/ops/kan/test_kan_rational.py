"""Group rationals: the stored fits are close to their activations, groups are independent, the
denominator never vanishes, and identity-initialised coefficients still receive gradients."""

from __future__ import annotations

import pytest
import torch

from mixerlab.ops.kan import rational_fused, rational_init, rational_reference, rational_second_moment


@pytest.mark.parametrize(
    ("name", "fn", "tol"),
    [("gelu", torch.nn.functional.gelu, 5e-3), ("silu", torch.nn.functional.silu, 1e-3)],
)
def test_fitted_inits_match_their_activation(name, fn, tol):
    a, b = rational_init(name)
    x = torch.linspace(-3, 3, 601, dtype=torch.float64).unsqueeze(-1)
    err = (rational_reference(x, a[None], b[None]) - fn(x)).abs().max()
    assert err < tol


def test_identity_init_is_exact_and_trains_its_denominator():
    a, b = rational_init("identity")
    b = b.clone().requires_grad_(True)
    x = torch.randn(5, 4, dtype=torch.float64)
    y = rational_reference(x, a.repeat(2, 1), b.repeat(2, 1))
    torch.testing.assert_close(y, x)
    y.square().sum().backward()
    assert b.grad.abs().min() > 0, "abs'(0) must not kill the gradient"


def test_groups_use_their_own_coefficients():
    x = torch.randn(3, 6, dtype=torch.float64)
    num = torch.randn(3, 6, dtype=torch.float64)
    den = torch.randn(3, 4, dtype=torch.float64)
    y = rational_reference(x, num, den)
    for g in range(3):
        cols = slice(2 * g, 2 * g + 2)
        xs = x[:, cols]
        p = sum(num[g, i] * xs**i for i in range(6))
        q = 1 + sum(den[g, j].abs() * xs.abs() ** (j + 1) for j in range(4))
        torch.testing.assert_close(y[:, cols], p / q)


def test_second_moment_of_identity_is_one():
    a, b = rational_init("identity")
    assert rational_second_moment(a[None], b[None]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("shape", [(6,), (3, 6), (2, 5, 6)])
def test_fused_equals_reference_values_and_gradients(shape):
    x = torch.randn(*shape, dtype=torch.float64) * 2
    num = torch.randn(3, 6, dtype=torch.float64)
    den = torch.tensor(
        [[0.0, -0.3, 0.2, 0.0], [0.5, 0.1, -0.2, 0.05], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64
    )
    grad_out = torch.randn(*shape, dtype=torch.float64)
    results = []
    for fn in (rational_reference, rational_fused):
        inputs = [t.clone().requires_grad_(True) for t in (x, num, den)]
        y = fn(*inputs)
        grads = torch.autograd.grad(y, inputs, grad_out)
        results.append((y, *grads))
    for ref, fused in zip(*results):
        torch.testing.assert_close(fused, ref, rtol=1e-10, atol=1e-12)


def test_fused_passes_gradcheck():
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    num = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    den = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rational_fused, (x, num, den))
