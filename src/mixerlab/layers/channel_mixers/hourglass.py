"""Hourglass (wide-narrow-wide) MLP channel mixer ``hourglass_mlp``.

Shapes: ``x: [..., D]`` -> lifted ``z: [..., W]`` (wide, ``W = wide_expand D``) -> ``depth`` residual
steps through a narrow bottleneck ``[..., N]`` -> back to ``[..., D]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mixerlab.errors import check, check_choice, check_positive_int
from mixerlab.layers.channel_mixers.mlp import ACTIVATIONS, hidden_width
from mixerlab.registry import CHANNEL_MIXERS


@CHANNEL_MIXERS.register(
    "hourglass_mlp",
    paper="Rethinking the shape convention of an MLP",
    arxiv="2510.01796",
    test_kwargs={"dim": 8, "wide_expand": 2, "hidden_dim": 3, "depth": 2},
)
class HourglassMLP(nn.Module):
    """Rethinking the shape convention of an MLP (arXiv:2510.01796): wide-narrow-wide residual MLP.

    ``z_0 = P x`` with ``P: [W, D]`` a fixed random lift (a buffer, never trained: the paper's
    finding that it can stay at its random initialisation), then for ``l = 1..depth``

        z_l = z_{l-1} + U_l act(V_l norm_l(z_{l-1})),   V_l: [N, W], U_l: [W, N],  N << W

    so the skip connections live in the wide space and the computation in the narrow one; finally
    ``y = W_out z_depth``, ``W_out: [D, W]`` (trained). ``norm_l`` is a LayerNorm (``norm=False``
    drops it). ``U_l`` starts small (``1 / sqrt(depth)`` of the usual scale) so the residual stream
    stays O(1) in depth. ``train_lift=True`` makes ``P`` a parameter for the paper's ablation.
    """

    def __init__(
        self,
        dim: int,
        wide_expand: float = 4.0,
        expand: float = 1.0,
        hidden_dim: int | None = None,
        depth: int = 2,
        activation: str = "gelu",
        norm: bool = True,
        train_lift: bool = False,
    ) -> None:
        super().__init__()
        narrow = hidden_width("hourglass_mlp", dim, expand, hidden_dim)
        check(wide_expand > 0, "hourglass_mlp", "wide_expand", wide_expand, "expected > 0")
        check_positive_int("hourglass_mlp", "depth", depth)
        check_choice("hourglass_mlp", "activation", activation, tuple(ACTIVATIONS))
        self.dim = dim
        wide = max(1, round(wide_expand * dim))
        lift = torch.empty(dim, wide)
        if train_lift:
            self.lift = nn.Parameter(lift)
        else:
            self.register_buffer("lift", lift)
        self._init_lift()  # drawn first, here, as it always was: seeded models keep their weights
        self.norms = nn.ModuleList(nn.LayerNorm(wide) if norm else nn.Identity() for _ in range(depth))
        self.down = nn.ModuleList(nn.Linear(wide, narrow) for _ in range(depth))
        self.up = nn.ModuleList(nn.Linear(narrow, wide) for _ in range(depth))
        self._init_up()
        self.act = ACTIVATIONS[activation]()
        self.out = nn.Linear(wide, dim)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The lift (a fixed random map unless ``train_lift``) and the residual branches' scale."""
        self._init_lift()
        self._init_up()

    @torch.no_grad()
    def _init_lift(self) -> None:
        dim, wide = self.lift.shape
        self.lift.copy_(torch.randn(dim, wide, device=self.lift.device) / math.sqrt(dim))

    @torch.no_grad()
    def _init_up(self) -> None:
        # Each of the depth residual branches starts small, so their sum keeps the lift's scale.
        for up in self.up:
            nn.init.normal_(up.weight, std=1.0 / math.sqrt(up.in_features * len(self.up)))

    def forward(self, x: Tensor) -> Tensor:
        z = x @ self.lift  # [..., D] @ [D, W]
        for norm, down, up in zip(self.norms, self.down, self.up):
            z = z + up(self.act(down(norm(z))))
        return self.out(z)
