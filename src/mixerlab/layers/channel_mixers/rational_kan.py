"""Group-rational KAN channel mixer ``grkan``, "Kolmogorov-Arnold Transformer" (arXiv:2409.10594).

Shapes: ``x: [..., D] -> [..., D]``, hidden width ``H``; rational coefficients ``[G, 6]`` and
``[G, 4]`` per rational (``G`` channel groups). The math lives in :mod:`mixerlab.ops.kan.rational`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mixerlab.errors import check_choice, check_divisible, check_positive_int
from mixerlab.layers.channel_mixers.mlp import hidden_width
from mixerlab.ops.kan import RATIONAL_INITS, rational_fused, rational_init, rational_second_moment
from mixerlab.registry import CHANNEL_MIXERS


class GroupRational(nn.Module):
    """``F_g(x) = P_g(x) / (1 + sum_j |b_{g,j}| |x|^j)`` applied to each of ``G`` channel groups."""

    def __init__(self, width: int, num_groups: int, init: str) -> None:
        super().__init__()
        self.width, self.num_groups, self.init = width, num_groups, init
        self.numerator = nn.Parameter(torch.empty(num_groups, 6))
        self.denominator = nn.Parameter(torch.empty(num_groups, 4))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        num, den = rational_init(self.init)
        self.numerator.copy_(num.float().repeat(self.num_groups, 1))
        self.denominator.copy_(den.float().repeat(self.num_groups, 1))

    def forward(self, x: Tensor) -> Tensor:
        return rational_fused(x, self.numerator, self.denominator)

    def second_moment(self) -> float:
        return rational_second_moment(self.numerator.detach(), self.denominator.detach())

    def init_second_moment(self) -> float:
        """:meth:`second_moment` of the initial rational, computed on the CPU whatever the device
        (a ``meta``-built layer has no values to integrate)."""
        with torch.device("cpu"):
            num, den = rational_init(self.init)
            return rational_second_moment(num.float()[None], den.float()[None])


@CHANNEL_MIXERS.register(
    "grkan",
    paper="Kolmogorov-Arnold Transformer",
    arxiv="2409.10594",
    test_kwargs={"dim": 8, "hidden_dim": 8, "num_groups": 2},
    meta={"params": "MLP + 10 G per rational", "time": "O(N D H)"},
)
class GRKAN(nn.Module):
    """Kolmogorov-Arnold Transformer (arXiv:2409.10594): the GR-KAN that replaces a transformer MLP.

    Two group-rational KAN layers, each a shared-per-group rational then a linear map:

        y = W_2 F_2(W_1 F_1(x) + b_1) + b_2
        F(x) = (a_0 + ... + a_5 x^5) / (1 + |b_1| |x| + ... + |b_4| |x|^4)

    Channels are split into ``num_groups`` groups (default 8, the paper's) sharing one rational, so
    the rational parameters are ``10 G`` per layer instead of per edge. ``F_1`` starts as the identity
    and ``F_2`` as GELU (``second_init``), the paper's choice, so at initialisation GR-KAN is the
    MLP it replaces. Variance-preserving init: ``Var(W) = 1 / (d_in E[F(x)^2])`` with
    ``x ~ N(0, 1)``, so unit-variance inputs give unit-variance outputs.
    """

    def __init__(
        self,
        dim: int,
        expand: float = 4.0,
        hidden_dim: int | None = None,
        num_groups: int = 8,
        second_init: str = "gelu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden = hidden_width("grkan", dim, expand, hidden_dim)
        check_positive_int("grkan", "num_groups", num_groups)
        check_divisible("grkan", "dim", dim, "num_groups", num_groups)
        check_divisible("grkan", "hidden_dim", hidden, "num_groups", num_groups)
        check_choice("grkan", "second_init", second_init, RATIONAL_INITS)
        self.dim = dim
        self.rational1 = GroupRational(dim, num_groups, "identity")
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.rational2 = GroupRational(hidden, num_groups, second_init)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """KAT's variance-preserving init of the linear maps, ``Var(W) = 1 / (d_in E[F(x)^2])``."""
        for rational, fc in ((self.rational1, self.fc1), (self.rational2, self.fc2)):
            std = 1.0 / math.sqrt(fc.in_features * rational.init_second_moment())
            nn.init.normal_(fc.weight, std=std)
            if fc.bias is not None:
                nn.init.zeros_(fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.rational2(self.fc1(self.rational1(x))))
