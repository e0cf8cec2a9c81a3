"""Normalisation layers: ``forward(x: [..., D]) -> [..., D]``.

- ``layernorm`` — Layer Normalization (arXiv:1607.06450).
- ``rmsnorm`` — Root Mean Square Layer Normalization (arXiv:1910.07467).
- ``dyt`` — Dynamic Tanh, "Transformers without Normalization" (arXiv:2503.10622).
- ``evonorm`` — EvoNorm-S0, "Evolving Normalization-Activation Layers" (arXiv:2004.02967).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from mixerlab.errors import check, check_divisible, check_positive_int
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
        self.weight = nn.Parameter(torch.empty(dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

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
        self.dim, self.alpha_init = dim, float(alpha_init)
        self.alpha = nn.Parameter(torch.empty(()))
        self.weight = nn.Parameter(torch.empty(dim))
        self.bias = nn.Parameter(torch.empty(dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.constant_(self.alpha, self.alpha_init)
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.alpha * x) * self.weight + self.bias


@NORMS.register(
    "evonorm",
    paper="Evolving Normalization-Activation Layers",
    arxiv="2004.02967",
    test_kwargs={"dim": 8, "num_groups": 2},
)
class EvoNormS0(nn.Module):
    """EvoNorm-S0, "Evolving Normalization-Activation Layers" (arXiv:2004.02967).

        y = x sigmoid(v x) / sqrt(groupvar(x) + eps) * gamma + beta

    ``groupvar`` is the variance over the ``D / G`` channels of each of ``num_groups`` groups, per
    position (the paper's images add the spatial positions to the group; a token has none). A
    sample-based layer: no batch statistics, so it acts per position and is causal. It is a
    normalisation *and* an activation (the ``x sigmoid(v x)`` is Swish). Paper default: 32 groups;
    here ``min(32, D)`` must divide ``D``, so the default is 8 for small widths. ``v``, ``gamma``
    start at 1 and ``beta`` at 0, as in the paper.
    """

    def __init__(self, dim: int, num_groups: int = 8, eps: float = 1e-5) -> None:
        super().__init__()
        check_positive_int("evonorm", "dim", dim)
        check_positive_int("evonorm", "num_groups", num_groups)
        check_divisible("evonorm", "dim", dim, "num_groups", num_groups)
        check(eps > 0, "evonorm", "eps", eps, "expected > 0")
        self.dim, self.num_groups, self.eps = dim, num_groups, eps
        self.v = nn.Parameter(torch.empty(dim))
        self.weight = nn.Parameter(torch.empty(dim))
        self.bias = nn.Parameter(torch.empty(dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.ones_(self.v)
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        xg = rearrange(x, "... (g c) -> ... g c", g=self.num_groups)
        std = torch.sqrt(xg.var(-1, unbiased=False, keepdim=True) + self.eps)
        num = rearrange(x * torch.sigmoid(self.v * x), "... (g c) -> ... g c", g=self.num_groups)
        return rearrange(num / std, "... g c -> ... (g c)") * self.weight + self.bias
