"""B-spline bases on a uniform grid, "KAN: Kolmogorov-Arnold Networks" (arXiv:2404.19756).

Shapes: ``x: [..., I]`` -> ``basis: [..., I, G + k]`` for ``G`` grid intervals and order ``k``
(degree; ``k = 3`` is cubic). The grid is extended by ``k`` knots on each side so that every point of
``[lo, hi]`` is covered by exactly ``k + 1`` non-zero bases that sum to one; outside the extended
grid all bases are zero (a KAN's SiLU base branch carries the signal there).
"""

from __future__ import annotations

import torch
from torch import Tensor


def bspline_knots(grid_size: int, order: int, lo: float, hi: float, **factory) -> Tensor:
    """Uniform knots ``t_0 < ... < t_{G + 2k}`` spanning ``[lo - k h, hi + k h]``, ``h = (hi - lo) / G``."""
    h = (hi - lo) / grid_size
    steps = torch.arange(-order, grid_size + order + 1, **factory)
    return lo + h * steps


def bspline_basis(x: Tensor, knots: Tensor, order: int) -> Tensor:
    """Cox-de Boor recursion, vectorised over points and knots.

    ``B_{i,0}(x) = 1[t_i <= x < t_{i+1}]``;
    ``B_{i,p}(x) = (x - t_i) / (t_{i+p} - t_i) B_{i,p-1}(x)``
    ``           + (t_{i+p+1} - x) / (t_{i+p+1} - t_{i+1}) B_{i+1,p-1}(x)``.
    Memory is ``O(N I (G + 2k))``: the ``[tokens, in, out]`` edge tensor is never built.
    """
    t = knots.to(x.dtype)
    x = x.unsqueeze(-1)  # [..., I, 1]
    basis = ((x >= t[:-1]) & (x < t[1:])).to(x.dtype)  # [..., I, G + 2k]
    for p in range(1, order + 1):
        left = (x - t[: -(p + 1)]) / (t[p:-1] - t[: -(p + 1)])
        right = (t[p + 1 :] - x) / (t[p + 1 :] - t[1:-p])
        basis = left * basis[..., :-1] + right * basis[..., 1:]
    return basis
