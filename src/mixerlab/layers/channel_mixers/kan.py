"""Kolmogorov-Arnold channel mixers with basis-expanded edges: ``kan`` (B-splines), ``ass_kan``
(a learned choice among several bases per node) and ``residual_kan`` (a Chebyshev KAN branch beside
an MLP).

Shapes: ``x: [..., D]``; a KAN layer maps ``[..., I] -> [..., O]`` through per-edge univariate
functions ``phi_{o,i}``, each a weighted sum of ``K`` basis functions. The basis is evaluated once,
``[..., I, K]``, flattened to ``[..., I K]`` and multiplied by the coefficients ``[I K, O]``: the
``[..., I, O]`` tensor of edge values is never built.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mixerlab.errors import check, check_choice, check_positive_int
from mixerlab.layers.channel_mixers.mlp import ACTIVATIONS, hidden_width
from mixerlab.ops.kan import bspline_basis, bspline_knots, chebyshev_basis, fourier_basis, rbf_basis
from mixerlab.registry import CHANNEL_MIXERS


class KANLayer(nn.Module):
    """One B-spline KAN layer, "KAN: Kolmogorov-Arnold Networks" (arXiv:2404.19756).

    ``y_o = b_o + sum_i [ w_{o,i} silu(x_i) + sum_j c_{o,i,j} B_j(x_i) ]`` with ``B_j`` the order-``k``
    B-splines on ``G`` uniform intervals of ``[grid_min, grid_max]`` (the paper's ``phi(x) = w_b b(x) +
    w_s spline(x)`` with ``w_s`` folded into ``c``). Spline coefficients start at ``N(0, 0.1^2 / I)`` so
    each edge starts near its SiLU base branch, as pykan's small initial noise does.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid_size: int = 5,
        spline_order: int = 3,
        grid_min: float = -1.0,
        grid_max: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.spline_order = in_features, out_features, spline_order
        self.grid = (grid_size, spline_order, grid_min, grid_max)
        num_basis = grid_size + spline_order
        self.register_buffer("knots", torch.empty(grid_size + 2 * spline_order + 1))
        self.base_weight = nn.Parameter(torch.empty(in_features, out_features))
        self.spline_coef = nn.Parameter(torch.empty(in_features * num_basis, out_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # The knots are computed from the options; recomputed so a meta-built layer works after to_empty.
        self.knots.copy_(bspline_knots(*self.grid, device=self.knots.device))
        fan_in, dev = self.in_features, self.base_weight.device
        self.base_weight.copy_(torch.randn(self.base_weight.shape, device=dev) / math.sqrt(fan_in))
        self.spline_coef.copy_(torch.randn(self.spline_coef.shape, device=dev) * 0.1 / math.sqrt(fan_in))
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        basis = bspline_basis(x, self.knots, self.spline_order)  # [..., I, G + k]
        spline = basis.flatten(-2) @ self.spline_coef  # [..., I (G + k)] @ [I (G + k), O]
        return nn.functional.silu(x) @ self.base_weight + spline + self.bias


def _check_kan(owner: str, grid_size: int, spline_order: int, grid_min: float, grid_max: float) -> None:
    check_positive_int(owner, "grid_size", grid_size)
    check_positive_int(owner, "spline_order", spline_order)
    check(grid_max > grid_min, owner, "grid_max", grid_max, f"must be > grid_min={grid_min}")


@CHANNEL_MIXERS.register(
    "kan",
    paper="KAN: Kolmogorov-Arnold Networks",
    arxiv="2404.19756",
    test_kwargs={"dim": 8, "hidden_dim": 6, "grid_size": 4},
    meta={"params": "(G + k + 1) (D H + H D)", "time": "O(N D H (G + k))"},
)
class KAN(nn.Module):
    """KAN: Kolmogorov-Arnold Networks (arXiv:2404.19756) as a ``D -> H -> D`` channel mixer.

    ``y = KANLayer_2(KANLayer_1(x))`` (see :class:`KANLayer`). Paper defaults: ``grid_size=5``,
    ``spline_order=3``, grid on ``[-1, 1]``. The hidden width defaults to ``expand=1``: each edge
    already carries ``G + k + 1`` parameters, so a 4x hidden layer would be ~9x an MLP's size.
    """

    def __init__(
        self,
        dim: int,
        expand: float = 1.0,
        hidden_dim: int | None = None,
        grid_size: int = 5,
        spline_order: int = 3,
        grid_min: float = -1.0,
        grid_max: float = 1.0,
    ) -> None:
        super().__init__()
        hidden = hidden_width("kan", dim, expand, hidden_dim)
        _check_kan("kan", grid_size, spline_order, grid_min, grid_max)
        self.dim = dim
        grid = {
            "grid_size": grid_size,
            "spline_order": spline_order,
            "grid_min": grid_min,
            "grid_max": grid_max,
        }
        self.layers = nn.Sequential(KANLayer(dim, hidden, **grid), KANLayer(hidden, dim, **grid))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


SPACES = ("bspline", "fourier", "rbf", "chebyshev")


class SelectableKANLayer(nn.Module):
    """One S-KAN layer, "Activation Space Selectable Kolmogorov-Arnold Networks" (arXiv:2408.08338).

    Every output node ``o`` mixes ``S`` activation spaces with learned selection weights
    ``alpha_o = softmax(a_o / tau)``:

        y_o = b_o + sum_i w_{o,i} silu(x_i) + sum_s alpha_{o,s} sum_i phi^s_{o,i}(x_i)

    where ``phi^s`` is a KAN edge function in space ``s``: B-spline (order 3 on ``G`` intervals of
    ``[-1, 1]``), Fourier (``G`` frequencies), Gaussian RBF (``G + 3`` centres on ``[-2, 2]``) or
    Chebyshev of ``tanh x`` (degree ``G``). The paper trains the full mixture, then keeps the best
    spaces and prunes the rest; the soft mixture here is its first (full-training) stage.
    """

    def __init__(
        self, in_features: int, out_features: int, spaces: tuple[str, ...], grid_size: int, tau: float
    ) -> None:
        super().__init__()
        self.spaces, self.grid_size, self.tau = spaces, grid_size, tau
        self.in_features = in_features
        self.register_buffer("knots", torch.empty(grid_size + 7))  # cubic: G + 2 * 3 + 1 knots
        self.base_weight = nn.Parameter(torch.empty(in_features, out_features))
        self.coef = nn.ParameterDict(
            {s: nn.Parameter(torch.empty(in_features * self._num_basis(s), out_features)) for s in spaces}
        )
        self.select_logits = nn.Parameter(torch.empty(len(spaces), out_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Also the coefficients held in ``coef`` (a ``ParameterDict``, which has no init of its own)."""
        self.knots.copy_(bspline_knots(self.grid_size, 3, -1.0, 1.0, device=self.knots.device))
        fan_in, dev = self.in_features, self.base_weight.device
        self.base_weight.copy_(torch.randn(self.base_weight.shape, device=dev) / math.sqrt(fan_in))
        for s in self.spaces:
            coef = self.coef[s]
            coef.copy_(torch.randn(coef.shape, device=dev) * 0.1 / math.sqrt(fan_in))
        nn.init.zeros_(self.select_logits)
        nn.init.zeros_(self.bias)

    def _num_basis(self, space: str) -> int:
        return {
            "bspline": self.grid_size + 3,
            "fourier": 2 * self.grid_size,
            "rbf": self.grid_size + 3,
            "chebyshev": self.grid_size + 1,
        }[space]

    def _basis(self, space: str, x: Tensor) -> Tensor:
        if space == "bspline":
            return bspline_basis(x, self.knots, 3)
        if space == "fourier":
            return fourier_basis(x, self.grid_size)
        if space == "rbf":
            return rbf_basis(x, self.grid_size + 3, -2.0, 2.0)
        return chebyshev_basis(x, self.grid_size)

    def selection(self) -> Tensor:
        """Selection weights ``[S, O]`` (each column sums to one)."""
        return torch.softmax(self.select_logits / self.tau, dim=0)

    def forward(self, x: Tensor) -> Tensor:
        alpha = self.selection()
        y = nn.functional.silu(x) @ self.base_weight + self.bias
        for s, space in enumerate(self.spaces):
            y = y + alpha[s] * (self._basis(space, x).flatten(-2) @ self.coef[space])
        return y


@CHANNEL_MIXERS.register(
    "ass_kan",
    paper="Activation Space Selectable Kolmogorov-Arnold Networks",
    arxiv="2408.08338",
    test_kwargs={"dim": 8, "hidden_dim": 6, "grid_size": 3},
)
class ActivationSpaceSelectableKAN(nn.Module):
    """Activation Space Selectable Kolmogorov-Arnold Networks (arXiv:2408.08338), ``D -> H -> D``.

    Two :class:`SelectableKANLayer` s; ``spaces`` picks the candidate bases (default all four),
    ``tau`` is the softmax temperature of the per-node selection.
    """

    def __init__(
        self,
        dim: int,
        expand: float = 1.0,
        hidden_dim: int | None = None,
        spaces: tuple[str, ...] | list[str] = SPACES,
        grid_size: int = 5,
        tau: float = 1.0,
    ) -> None:
        super().__init__()
        hidden = hidden_width("ass_kan", dim, expand, hidden_dim)
        check_positive_int("ass_kan", "grid_size", grid_size)
        check(tau > 0, "ass_kan", "tau", tau, "expected > 0")
        spaces = tuple(spaces)
        check(
            len(spaces) > 0 and len(set(spaces)) == len(spaces) and set(spaces) <= set(SPACES),
            "ass_kan",
            "spaces",
            spaces,
            f"expected distinct names from {list(SPACES)}",
        )
        self.dim = dim
        self.layers = nn.Sequential(
            SelectableKANLayer(dim, hidden, spaces, grid_size, tau),
            SelectableKANLayer(hidden, dim, spaces, grid_size, tau),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ChebyshevKANLayer(nn.Module):
    """KAN layer with Chebyshev edges (RKAN's branch).

    ``y_o = sum_i w_{o,i} silu(x_i) + sum_{i,j} c_{o,i,j} T_j(tanh x_i)``.
    """

    def __init__(self, in_features: int, out_features: int, degree: int) -> None:
        super().__init__()
        self.degree = degree
        self.base_weight = nn.Parameter(torch.empty(in_features, out_features))
        self.coef = nn.Parameter(torch.empty(in_features * (degree + 1), out_features))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        fan_in, num_coef, dev = self.base_weight.shape[0], self.coef.shape[0], self.base_weight.device
        self.base_weight.copy_(torch.randn(self.base_weight.shape, device=dev) / math.sqrt(fan_in))
        self.coef.copy_(torch.randn(self.coef.shape, device=dev) / num_coef)

    def forward(self, x: Tensor) -> Tensor:
        basis = chebyshev_basis(x, self.degree).flatten(-2)  # [..., I (n + 1)]
        return nn.functional.silu(x) @ self.base_weight + basis @ self.coef


@CHANNEL_MIXERS.register(
    "residual_kan",
    paper="Residual Kolmogorov-Arnold Network for Enhanced Deep Learning",
    arxiv="2410.05500",
    test_kwargs={"dim": 8, "expand": 2, "reduce_factor": 2},
)
class ResidualKAN(nn.Module):
    """Residual Kolmogorov-Arnold Network for Enhanced Deep Learning (arXiv:2410.05500).

    RKAN adds a compact KAN branch beside an existing stage and sums the two ("addition"
    mechanism). Here the stage is the usual MLP and the branch is reduce -> Chebyshev KAN -> expand:

        y = W_2 act(W_1 x) + W_e ChebyKAN(W_r x),   W_r: [D / r, D], W_e: [D, D / r]

    The authors' defaults: reduction ``r = 4``, Chebyshev degree 3. Their convolutional branch
    ends in a BatchNorm and maps inputs to ``[-1, 1]`` by per-sample standardisation; this
    per-token layer uses ``tanh`` instead, which needs no batch statistics.
    """

    def __init__(
        self,
        dim: int,
        expand: float = 4.0,
        hidden_dim: int | None = None,
        activation: str = "gelu",
        reduce_factor: int = 4,
        degree: int = 3,
    ) -> None:
        super().__init__()
        hidden = hidden_width("residual_kan", dim, expand, hidden_dim)
        check_choice("residual_kan", "activation", activation, tuple(ACTIVATIONS))
        check_positive_int("residual_kan", "reduce_factor", reduce_factor)
        check_positive_int("residual_kan", "degree", degree)
        self.dim = dim
        narrow = max(1, dim // reduce_factor)
        self.up = nn.Linear(dim, hidden)
        self.act = ACTIVATIONS[activation]()
        self.down = nn.Linear(hidden, dim)
        self.reduce = nn.Linear(dim, narrow, bias=False)
        self.kan = ChebyshevKANLayer(narrow, narrow, degree)
        self.expand = nn.Linear(narrow, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.act(self.up(x))) + self.expand(self.kan(self.reduce(x)))
