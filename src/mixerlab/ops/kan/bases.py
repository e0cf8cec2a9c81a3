"""Other univariate bases for KAN edges. Shapes: ``x: [..., I]`` -> ``[..., I, K]``.

- Fourier (FourierKAN): ``cos(j x), sin(j x)`` for ``j = 1..K/2``.
- Gaussian RBF (FastKAN, arXiv:2405.06721): ``exp(-((x - c_j) / h)^2)`` on uniform centres.
- Chebyshev (used by Residual KAN, arXiv:2410.05500): ``T_0..T_n`` of ``tanh(x)``, by the
  recurrence ``T_{j+1} = 2 u T_j - T_{j-1}``; ``tanh`` keeps ``u`` in ``[-1, 1]`` where they are bounded.
"""

from __future__ import annotations

import torch
from torch import Tensor


def fourier_basis(x: Tensor, num_frequencies: int) -> Tensor:
    j = torch.arange(1, num_frequencies + 1, device=x.device, dtype=x.dtype)
    angle = x.unsqueeze(-1) * j  # [..., I, F]
    return torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)


def rbf_basis(x: Tensor, num_centres: int, lo: float, hi: float) -> Tensor:
    centres = torch.linspace(lo, hi, num_centres, device=x.device, dtype=x.dtype)
    width = (hi - lo) / max(num_centres - 1, 1)
    return torch.exp(-(((x.unsqueeze(-1) - centres) / width) ** 2))


def chebyshev_basis(x: Tensor, degree: int) -> Tensor:
    u = torch.tanh(x)
    terms = [torch.ones_like(u), u]
    for _ in range(2, degree + 1):
        terms.append(2 * u * terms[-1] - terms[-2])
    return torch.stack(terms[: degree + 1], dim=-1)
