"""Low-rank transforms: SVD truncation by an energy threshold, and Maestro's ordered trainable factors.

Both replace a linear layer ``W: [out, in]`` by factors ``U: [out, r]``, ``V: [r, in]`` with
``W ~ U V``; the rank ``r`` of each layer is the smallest that keeps ``energy`` of its spectrum
(``sum_{i<r} s_i^2 >= energy * sum_i s_i^2``), so each layer gets its own rank. A layer is only
factored when ``r (out + in) < out in`` (the factors are smaller than the matrix).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixerlab.errors import check
from mixerlab.layers.aux_loss import report_aux_loss
from mixerlab.registry import TRANSFORMS
from mixerlab.train.transforms.base import (
    Transform,
    TransformContext,
    check_fraction,
    linear_layers,
    replace_modules,
    size_facts,
)


def energy_rank(singular_values: Tensor, energy: float) -> int:
    """Smallest ``r`` with ``sum_{i<r} s_i^2 >= energy * sum_i s_i^2`` (``s`` in the order given)."""
    power = singular_values.detach().double().pow(2)
    cumulative = power.cumsum(0) / power.sum().clamp_min(1e-30)
    return int((cumulative < energy - 1e-12).sum()) + 1


class LowRankLinear(nn.Module):
    """``y = x V^T U^T + b`` with ``V: [r, in]`` (``first``) and ``U: [out, r]`` (``second``)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool) -> None:
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.first = nn.Linear(in_features, rank, bias=False)
        self.second = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.second(self.first(x))


def svd_factors(weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``U sqrt(S)``, ``S`` and ``sqrt(S) V^T`` of ``weight: [out, in]`` (float64 for the decomposition)."""
    u, s, vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
    root = s.sqrt()
    return (u * root).to(weight.dtype), s.to(weight.dtype), (root[:, None] * vh).to(weight.dtype)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@TRANSFORMS.register(
    "svd",
    paper="Exploiting Linear Structure Within Convolutional Networks for Efficient Evaluation",
    arxiv="1404.0736",
    test_kwargs={"energy": 0.9},
)
class SVDTruncation(Transform):
    """Truncated SVD of every linear layer (arXiv:1404.0736), the rank per layer by an energy threshold.

    ``W = U S V^T`` is cut to the ``r`` leading singular values keeping ``energy`` of
    ``sum s_i^2``; ``U sqrt(S_r)`` and ``sqrt(S_r) V_r^T`` become the two factors. By Eckart-Young
    this is the best rank-``r`` approximation in Frobenius norm. ``skip`` lists name prefixes left
    dense. Meant ``when: after`` (on a trained model).
    """

    def __init__(self, energy: float = 0.9, skip: list[str] | None = None) -> None:
        check(0 < energy <= 1, "svd", "energy", energy, "expected 0 < energy <= 1")
        self.energy, self.skip = energy, tuple(skip or ())

    @torch.no_grad()
    def apply(
        self, model: nn.Module, context: TransformContext | None = None
    ) -> tuple[nn.Module, dict[str, Any]]:
        before, new, ranks = _params(model), {}, {}
        for name, linear in linear_layers(model, self.skip):
            us, s, vh = svd_factors(linear.weight)
            r = energy_rank(s, self.energy)
            out, inp = linear.weight.shape
            if r * (out + inp) >= out * inp:
                continue
            layer = LowRankLinear(inp, out, r, linear.bias is not None).to(
                linear.weight.device, linear.weight.dtype
            )
            layer.second.weight.copy_(us[:, :r])
            layer.first.weight.copy_(vh[:r])
            if linear.bias is not None:
                layer.second.bias.copy_(linear.bias)
            new[id(linear)], ranks[name] = layer, r
        model = replace_modules(model, new)
        return model, {
            "energy": self.energy,
            "ranks": ranks,
            "params_removed": before - _params(model),
            **size_facts(model, context),
        }


class OrderedLowRankLinear(nn.Module):
    """Maestro's layer: ``W = sum_i u_i v_i^T`` trained with ordered dropout over the rank ``i``.

    In training, with probability ``drop_prob`` a cut ``b ~ U{1..r}`` is drawn for the forward and
    only ``u_1..u_b``, ``v_1..v_b`` are used, so the leading components learn to carry most of the
    layer (an ordered, nested representation, like a learned SVD). The hierarchical group lasso
    ``sum_b ||[u_b.., v_b..]||`` (weight ``group_lasso``, reported as an auxiliary loss) pushes the
    trailing components towards zero. ``rank`` is the number of components in use.
    """

    def __init__(self, linear: nn.Linear, drop_prob: float, group_lasso: float) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        us, _, vh = svd_factors(linear.weight)
        self.u = nn.Parameter(us.contiguous())  # [out, r]
        self.v = nn.Parameter(vh.contiguous())  # [r, in]
        self.bias = linear.bias
        self.drop_prob, self.group_lasso = drop_prob, group_lasso
        self.rank = self.u.shape[1]
        self.truncated = False

    def forward(self, x: Tensor) -> Tensor:
        b = self.rank
        if self.training and self.drop_prob > 0 and float(torch.rand(())) < self.drop_prob:
            b = int(torch.randint(1, self.rank + 1, ()))
        if self.training and self.group_lasso > 0:
            norms = self.u.pow(2).sum(0) + self.v.pow(2).sum(1)  # [r]
            tails = norms.flip(0).cumsum(0).flip(0).clamp_min(1e-12).sqrt()
            report_aux_loss("maestro_group_lasso", self.group_lasso * tails.sum())
        return F.linear(F.linear(x, self.v[:b]), self.u[:, :b], self.bias)

    def importance(self) -> Tensor:
        """``|u_i| |v_i|``: each component's share, in the learned order (ordered dropout's point)."""
        return self.u.detach().norm(dim=0) * self.v.detach().norm(dim=1)

    @torch.no_grad()
    def truncate(self, energy: float) -> int:
        r = energy_rank(self.importance(), energy)
        self.u = nn.Parameter(self.u[:, :r].contiguous())
        self.v = nn.Parameter(self.v[:r].contiguous())
        self.rank, self.truncated = r, True
        return r


@TRANSFORMS.register(
    "maestro",
    paper="Maestro: Uncovering Low-Rank Structures via Trainable Decomposition",
    arxiv="2308.14929",
    test_kwargs={"energy": 0.9},
)
class Maestro(Transform):
    """Trainable ordered low-rank factors (arXiv:2308.14929), meant ``when: before``.

    Each linear layer becomes an :class:`OrderedLowRankLinear` at full rank, initialised from the
    SVD of its weight, and trains with ordered dropout (``drop_prob``) and the hierarchical group
    lasso (``group_lasso``). ``finalize`` keeps, per layer, the leading components that hold
    ``energy`` of ``sum_i (|u_i| |v_i|)^2`` in the learned order (a layer whose factors would
    then be larger than its matrix becomes dense again); the ranks reached are in :attr:`ranks`.
    ``when: after`` is SVD initialisation and truncation without training.
    """

    def __init__(
        self,
        energy: float = 0.9,
        drop_prob: float = 0.5,
        group_lasso: float = 1e-4,
        skip: list[str] | None = None,
    ) -> None:
        check(0 < energy <= 1, "maestro", "energy", energy, "expected 0 < energy <= 1")
        check_fraction("maestro", "drop_prob", drop_prob, closed=True)
        check(group_lasso >= 0, "maestro", "group_lasso", group_lasso, "expected >= 0")
        self.energy, self.drop_prob, self.group_lasso = energy, drop_prob, group_lasso
        self.skip = tuple(skip or ())
        self.ranks: dict[str, int] = {}

    def apply(
        self, model: nn.Module, context: TransformContext | None = None
    ) -> tuple[nn.Module, dict[str, Any]]:
        layers = linear_layers(model, self.skip)
        model = replace_modules(
            model, {id(m): OrderedLowRankLinear(m, self.drop_prob, self.group_lasso) for _, m in layers}
        )
        facts: dict[str, Any] = {"energy": self.energy, "layers": len(layers)}
        if self.when == "after":
            model = self.finalize(model)
            facts.update(ranks=self.ranks, **size_facts(model, context))
        return model, facts

    @torch.no_grad()
    def finalize(self, model: nn.Module) -> nn.Module:
        names, dense = {id(m): n for n, m in model.named_modules()}, {}
        for module in list(model.modules()):
            if isinstance(module, OrderedLowRankLinear) and not module.truncated:
                r = module.truncate(self.energy)
                self.ranks[names[id(module)]] = r
                out, inp = module.out_features, module.in_features
                if r * (out + inp) >= out * inp:  # the factors would be larger than the matrix
                    linear = nn.Linear(inp, out, bias=module.bias is not None)
                    linear = linear.to(module.u.device, module.u.dtype)
                    linear.weight.copy_(module.u @ module.v)
                    if module.bias is not None:
                        linear.bias = module.bias
                    dense[id(module)] = linear
        return replace_modules(model, dense)
