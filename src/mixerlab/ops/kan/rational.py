"""Group rational functions, "Kolmogorov-Arnold Transformer" (arXiv:2409.10594).

Shapes: ``x: [..., D]`` split into ``G`` groups of ``D / G`` channels; ``numerator: [G, m + 1]``,
``denominator: [G, n]``. Each group ``g`` applies

    F_g(x) = (a_0 + a_1 x + ... + a_m x^m) / (1 + |b_1| |x| + ... + |b_n| |x|^n)

This is the "safe" Padé form of the authors' released kernels (the paper's text writes
``1 + |b_1 x + ... + b_n x^n|``); both keep the denominator >= 1, so there are no poles. The paper's
default orders are ``m = 5``, ``n = 4``. ``rational_reference`` is the equation as written (autograd
derivatives); ``rational_fused`` is the same function with a closed-form backward that stores only
the input (tested equal in float64).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor


def _unit_sign(b: Tensor) -> Tensor:
    # d|b|/db with sign(0) = +1: torch's abs has gradient 0 at 0, so a coefficient initialised to
    # exactly 0 (the identity init) would never move; the authors' kernels use +1 there too.
    return torch.where(b < 0, -1.0, 1.0).to(b.dtype)


def rational_reference(x: Tensor, numerator: Tensor, denominator: Tensor) -> Tensor:
    """The equation term by term, differentiated by autograd; the spec for :func:`rational_fused`."""
    groups = numerator.shape[0]
    xg = rearrange(x, "... (g c) -> ... g c", g=groups)
    b = denominator * _unit_sign(denominator)  # |b| with a unit slope at 0
    p = sum(numerator[:, i, None] * xg**i for i in range(numerator.shape[1]))
    q = 1 + sum(b[:, j, None] * xg.abs() ** (j + 1) for j in range(denominator.shape[1]))
    return rearrange(p / q, "... g c -> ... (g c)")


def _horner(coef: Tensor, x: Tensor) -> Tensor:
    """``sum_i coef[:, i] x^i`` with ``coef: [G, m + 1]``, ``x: [..., G, C]``."""
    out = coef[:, -1, None].expand_as(x)
    for i in range(coef.shape[1] - 2, -1, -1):
        out = out * x + coef[:, i, None]
    return out


class _RationalFused(torch.autograd.Function):
    """Forward by Horner's rule, backward from the closed-form derivatives, saving only the input:
    autograd through the reference would keep ~20 intermediate tensors of the input's size."""

    @staticmethod
    def forward(ctx, xg: Tensor, numerator: Tensor, denominator: Tensor) -> Tensor:
        ctx.save_for_backward(xg, numerator, denominator)
        b = denominator.abs()
        ax = xg.abs()
        q = 1 + _horner(torch.cat([torch.zeros_like(b[:, :1]), b], 1), ax)
        return _horner(numerator, xg) / q

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        xg, a, b_raw = ctx.saved_tensors
        b = b_raw.abs()
        m, n = a.shape[1] - 1, b.shape[1]
        ax = xg.abs()
        p = _horner(a, xg)
        q = 1 + _horner(torch.cat([torch.zeros_like(b[:, :1]), b], 1), ax)
        dp = _horner(a[:, 1:] * torch.arange(1, m + 1, dtype=a.dtype, device=a.device), xg)
        dq = torch.sign(xg) * _horner(b * torch.arange(1, n + 1, dtype=b.dtype, device=b.device), ax)
        inv_q = 1 / q
        grad_x = grad * (dp - p * inv_q * dq) * inv_q
        groups = xg.shape[-2]

        def per_group(t: Tensor) -> Tensor:  # [..., G, C] -> [G]
            return t.reshape(-1, groups, t.shape[-1]).sum((0, 2))

        g_over_q = grad * inv_q
        g_pq2 = -g_over_q * p * inv_q
        grad_a, grad_b, power = [per_group(g_over_q)], [], torch.ones_like(xg)
        for i in range(1, max(m, n) + 1):
            power = power * xg  # x^i, then |x|^i = sign(x)^i x^i without another abs
            if i <= m:
                grad_a.append(per_group(g_over_q * power))
            if i <= n:
                grad_b.append(per_group(g_pq2 * (power if i % 2 == 0 else power.abs())))
        grad_a, grad_b = torch.stack(grad_a, -1), torch.stack(grad_b, -1)
        return grad_x, grad_a, grad_b * _unit_sign(b_raw)


def rational_fused(x: Tensor, numerator: Tensor, denominator: Tensor) -> Tensor:
    """Same values and gradients as :func:`rational_reference`, with a hand-written backward."""
    xg = rearrange(x, "... (g c) -> ... g c", g=numerator.shape[0])
    return rearrange(_RationalFused.apply(xg, numerator, denominator), "... g c -> ... (g c)")


# Coefficients (a_0..a_5, |b_1|..|b_4|) of F fitted to each activation on [-3, 3]: least squares over
# 1001 points in float64 with L-BFGS, from a = (0, .5, .3, 0, 0, 0), b = (.1, .1, .01, .01). Max
# error on [-3, 3]: GELU 4.2e-3, SiLU 6.7e-4 (checked in tests/ops/kan/test_kan_rational.py).
_FITTED: dict[str, tuple[list[float], list[float]]] = {
    "gelu": (
        [-0.0013185559, 0.5102019565, 0.4180201380, 0.1328961488, 0.0258190940, 0.0031502188],
        [0.0785324788, 0.1740759867, 0.0412765329, 0.0000132806],
    ),
    "silu": (
        [-0.0000546602, 0.5042991010, 0.2525384963, 0.0647785089, 0.0110157678, 0.0009695363],
        [0.0273235977, 0.1015998179, 0.0114259377, 0.0003212695],
    ),
}
RATIONAL_INITS = ("identity", *_FITTED)


def rational_init(activation: str) -> tuple[Tensor, Tensor]:
    """Coefficients ``(a: [6], b: [4])`` of the order-(5, 4) rational closest to ``activation``.

    ``identity`` is exact (``a_1 = 1``, rest 0), as KAT uses for the first of its two rationals.
    """
    if activation == "identity":
        num = torch.zeros(6, dtype=torch.float64)
        num[1] = 1.0
        return num, torch.zeros(4, dtype=torch.float64)
    num, den = _FITTED[activation]
    return torch.tensor(num, dtype=torch.float64), torch.tensor(den, dtype=torch.float64)


def rational_second_moment(numerator: Tensor, denominator: Tensor, points: int = 4001) -> float:
    """``E[F(x)^2]`` for ``x ~ N(0, 1)`` by quadrature on ``[-8, 8]``.

    KAT's variance-preserving init sets ``Var(W) = 1 / (d_in E[F(x)^2])`` for ``y = W F(x)``, so that a
    unit-variance input gives a unit-variance output.
    """
    x = torch.linspace(-8.0, 8.0, points, dtype=torch.float64)
    density = torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    fx = rational_reference(x.unsqueeze(-1), numerator[:1].double(), denominator[:1].double()).squeeze(-1)
    return float(torch.trapezoid(fx**2 * density, x))
