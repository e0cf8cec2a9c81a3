"""Normalisation layers: ``forward(x: [..., D]) -> [..., D]``.

- ``layernorm`` — Layer Normalization (arXiv:1607.06450).
- ``rmsnorm`` — Root Mean Square Layer Normalization (arXiv:1910.07467).
- ``dyt`` — Dynamic Tanh, "Transformers without Normalization" (arXiv:2503.10622).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixerlab.errors import check, check_positive_int
from mixerlab.registry import NORMS

_TINY = {"dim": 8}


@NORMS.register("layernorm", paper="Layer Normalization", arxiv="1607.06450", test_kwargs=_TINY)
class LayerNorm(nn.LayerNorm):
    """Layer Normalization (arXiv:1607.06450): centre and scale each vector over its last dim."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True) -> None:
        check_positive_int("layernorm", "dim", dim)
        check(eps > 0, "layernorm", "eps", eps, "expected > 0")
        super().__init__(dim, eps=eps, bias=bias)
        self.dim = dim


@NORMS.register(
    "rmsnorm", paper="Root Mean Square Layer Normalization", arxiv="1910.07467", test_kwargs=_TINY
)
class RMSNorm(nn.Module):
    """Root Mean Square Layer Normalization (arXiv:1910.07467): ``x / rms(x) * g``."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        check_positive_int("rmsnorm", "dim", dim)
        check(eps > 0, "rmsnorm", "eps", eps, "expected > 0")
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.rms_norm(x, (self.dim,), self.weight, self.eps)


@NORMS.register(
    "dyt",
    paper="Transformers without Normalization",
    arxiv="2503.10622",
    test_kwargs={"dim": 8, "alpha_init": 0.7},
)
class DynamicTanh(nn.Module):
    """Dynamic Tanh, "Transformers without Normalization" (arXiv:2503.10622): ``g * tanh(a x) + b``.

    ``alpha_init`` is the paper's default 0.5 for non-LLM settings; ``a`` is one learnable scalar.
    """

    def __init__(self, dim: int, alpha_init: float = 0.5) -> None:
        super().__init__()
        check_positive_int("dyt", "dim", dim)
        check(alpha_init > 0, "dyt", "alpha_init", alpha_init, "expected > 0")
        self.dim = dim
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.alpha * x) * self.weight + self.bias
