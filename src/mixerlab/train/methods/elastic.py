"""Nested, elastic networks: many sub-networks trained inside one model, each evaluated after training.

A sub-network of ``Model(stem, backbone, head)`` keeps the leading ``depth`` blocks and, inside
each, the leading ``width`` fraction of every hidden vector: each block-internal linear map that
reads a vector wider or narrower than the model dimension (an MLP's or GLU's down projection, an
expanded mixer's output projection) sees only its first ``ceil(width * n)`` inputs, the rest
zeroed -- so only the leading hidden units are used. Inputs are cut rather than outputs because
projections are often fused (``[gate; up]``, ``[k; v]``): a prefix of a fused output would keep
one part and drop the other. The residual stream, stem, head and attention heads (whose output
projection reads exactly the model dimension) stay whole. Sub-networks are nested: a smaller one
is a prefix of every larger one.

- ``sortednet`` (arXiv:2309.00255): each step trains the full network and randomly sampled
  sub-networks of the width x depth grid (their gradients accumulate);
- ``matryoshka`` (arXiv:2205.13147): the loss is summed over nested prefixes of the final
  representation (the head reads its first ``m`` channels, the rest zeroed);
- ``ofa`` (arXiv:1908.09791): Once-for-All progressive shrinking -- the full network first, then
  elastic depth, then elastic depth and width, each sub-network also distilled from the full one.

Shapes: tokens ``[B, T, D]``; a hidden input ``[..., n]`` keeps ``[..., :ceil(width n)]``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from mixerlab.errors import check
from mixerlab.layers.aux_loss import collect_aux_losses
from mixerlab.registry import METHODS
from mixerlab.train.methods.base import (
    TrainingMethod,
    aux_total,
    blocks_of,
    embed,
    metrics_row,
    read_out,
    run_block,
    unwrap,
)
from mixerlab.train.methods.distill import soft_target_loss


def hidden_linears(model: nn.Module) -> list[nn.Linear]:
    """The block-internal linear maps that read hidden units (input width != model dim)."""
    dim = unwrap(model).backbone.dim
    blocks = blocks_of(model, "elastic")
    return [m for b in blocks for m in b.modules() if isinstance(m, nn.Linear) and m.in_features != dim]


@contextlib.contextmanager
def narrowed(model: nn.Module, width: float) -> Iterator[None]:
    """Within the blocks, every linear map reading hidden units reads only the leading ``width``."""
    if width >= 1.0:
        yield
        return
    handles = []
    for layer in hidden_linears(model):
        keep = max(1, math.ceil(width * layer.in_features))

        def cut(module: nn.Module, args: tuple[Any, ...], keep: int = keep) -> tuple[Any, ...]:
            x = args[0]
            mask = torch.zeros(x.shape[-1], device=x.device, dtype=x.dtype)
            mask[:keep] = 1
            return (x * mask, *args[1:])

        handles.append(layer.register_forward_pre_hook(cut))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def subnet_forward(model: nn.Module, inputs: Any, width: float, depth: int) -> Tensor:
    """The prediction of the sub-network of the leading ``depth`` blocks at ``width``."""
    with narrowed(model, width):
        h, context = embed(model, inputs)
        for block in list(blocks_of(model, "elastic"))[:depth]:
            h = run_block(block, h)
        return read_out(model, h, context)


def compute_fraction(model: nn.Module, width: float, depth: int) -> float:
    """Share of the backbone's linear multiply-adds per token a sub-network keeps (attention's
    sequence-length term and the stem and head are not counted)."""
    blocks = blocks_of(model, "elastic")
    dim = unwrap(model).backbone.dim
    total = kept = 0.0
    for i, block in enumerate(blocks):
        for m in block.modules():
            if not isinstance(m, nn.Linear):
                continue
            n = m.weight.numel()
            total += n
            if i < depth:
                # A map writing or reading hidden units needs only the leading ``width`` of them.
                narrow = m.out_features != dim or m.in_features != dim
                kept += n * (min(width, 1.0) if narrow else 1.0)
    return kept / total if total else depth / max(len(blocks), 1)


class SubNetwork(nn.Module):
    """A sub-network, callable like the model (``pred, state = sub(inputs)``) for evaluation."""

    def __init__(self, model: nn.Module, width: float, depth: int) -> None:
        super().__init__()
        self.model, self.width, self.depth = model, width, depth

    def forward(self, inputs: Any, **kwargs: Any) -> tuple[Tensor, None]:
        return subnet_forward(self.model, inputs, self.width, self.depth), None


def _check_grid(owner: str, model: nn.Module, widths: list[float], depths: list[int] | None) -> list[int]:
    blocks = blocks_of(model, owner)
    depths = list(depths) if depths else list(range(1, len(blocks) + 1))
    check(
        all(isinstance(d, int) and 1 <= d <= len(blocks) for d in depths),
        owner,
        "depths",
        depths,
        f"block counts in 1..{len(blocks)}",
    )
    check(
        widths == [1.0] or bool(hidden_linears(model)),
        owner,
        "widths",
        widths,
        "this model's blocks have no hidden linear units to narrow; use widths: [1.0]",
    )
    return sorted(set(depths))


class NestedMethod(TrainingMethod):
    """Shared by the nested methods: the width x depth grid and its evaluation after training."""

    owner = "nested"

    def __init__(self, widths: list[float], depths: list[int] | None, seed: int) -> None:
        widths = sorted({float(w) for w in widths})
        check(
            bool(widths) and all(0 < w <= 1 for w in widths),
            self.owner,
            "widths",
            widths,
            "fractions in (0, 1], e.g. [0.25, 0.5, 1.0]",
        )
        self.widths, self._depths = widths, depths
        self.depths: list[int] = []
        self.generator = torch.Generator().manual_seed(seed)

    def wrap(self, model: nn.Module) -> nn.Module:
        self.depths = _check_grid(self.owner, model, self.widths, self._depths)
        return model

    @property
    def full(self) -> tuple[float, int]:
        return max(self.widths), max(self.depths)

    def grid(self) -> list[tuple[float, int]]:
        return list(itertools.product(self.widths, self.depths))

    def sample(self, widths: list[float], depths: list[int]) -> tuple[float, int]:
        i = int(torch.randint(len(widths), (), generator=self.generator))
        j = int(torch.randint(len(depths), (), generator=self.generator))
        return widths[i], depths[j]

    def evaluate_variants(self, model: nn.Module, evaluate: Callable[[nn.Module], Any]) -> dict[str, Any]:
        rows = {}
        for width, depth in self.grid():
            metrics = evaluate(SubNetwork(model, width, depth))
            rows[f"w{width:g}_d{depth}"] = metrics_row(
                metrics, width=width, depth=depth, compute_fraction=compute_fraction(model, width, depth)
            )
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])


@METHODS.register(
    "sortednet",
    paper="SortedNet: A Scalable and Generalized Framework for Training Modular Deep Neural Networks",
    arxiv="2309.00255",
    summary="Nested sub-networks (leading widths x depths) trained together by random sampling.",
    test_kwargs={"widths": [0.5, 1.0], "num_samples": 1},
)
class SortedNet(NestedMethod):
    """SortedNet (arXiv:2309.00255): the full network plus ``num_samples`` random sub-networks per step.

    The sub-networks share parameters in sorted (leading-unit) order, so any of them can be cut
    from the trained model without search; their losses are summed (gradient accumulation) and
    divided by the number of networks trained in the step. ``evaluate_variants`` evaluates every
    width x depth sub-network with the share of the backbone's compute it keeps.
    """

    owner = "sortednet"

    def __init__(
        self,
        widths: list[float] = (0.25, 0.5, 0.75, 1.0),
        depths: list[int] | None = None,
        num_samples: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(list(widths), depths, seed)
        check(
            isinstance(num_samples, int) and num_samples >= 0, "sortednet", "num_samples", num_samples, ">= 0"
        )
        self.num_samples = num_samples
        self.last_sampled: list[tuple[float, int]] = []

    def loss(self, model: nn.Module, batch: dict[str, Any], objective, step: int) -> tuple[Tensor, Tensor]:
        inputs, targets = batch["inputs"], batch["targets"]
        nets = [self.full] + [self.sample(self.widths, self.depths) for _ in range(self.num_samples)]
        self.last_sampled = nets
        with collect_aux_losses() as aux:
            losses, pred = [], None
            for width, depth in nets:
                out = subnet_forward(model, inputs, width, depth)
                pred = out if pred is None else pred
                losses.append(objective.loss(out, targets))
            loss = torch.stack(losses).mean()
            total = loss + aux_total(aux, loss)
        return total, pred


@METHODS.register(
    "matryoshka",
    paper="Matryoshka Representation Learning",
    arxiv="2205.13147",
    summary="The loss is summed over nested prefixes of the final representation.",
    test_kwargs={"dims": [4, 16]},
)
class Matryoshka(TrainingMethod):
    """Matryoshka representation learning (arXiv:2205.13147): ``sum_m c_m L(head(z[:m]))``.

    ``z`` is the backbone's normalised output; the head reads its first ``m`` channels (the others
    zeroed, i.e. the head's weights sliced to ``W[:, :m]``: MRL-E, one shared head). ``dims``
    defaults to halvings of the model dimension down to 8; ``weights`` (default all 1) are the
    ``c_m``. ``evaluate_variants`` evaluates the model at every prefix.
    """

    def __init__(self, dims: list[int] | None = None, weights: list[float] | None = None) -> None:
        self._dims, self._weights = dims, weights
        self.dims: list[int] = []
        self.weights: list[float] = []

    def wrap(self, model: nn.Module) -> nn.Module:
        blocks_of(model, "matryoshka")
        dim = unwrap(model).backbone.dim
        if self._dims:
            dims = sorted(set(self._dims))
        else:
            dims, m = [dim], dim
            while m // 2 >= 8:
                m //= 2
                dims.insert(0, m)
        check(
            all(isinstance(m, int) and 1 <= m <= dim for m in dims),
            "matryoshka",
            "dims",
            dims,
            f"in 1..{dim}",
        )
        weights = list(self._weights) if self._weights else [1.0] * len(dims)
        check(len(weights) == len(dims), "matryoshka", "weights", weights, f"one per dim ({len(dims)})")
        self.dims, self.weights = dims, weights
        return model

    def loss(self, model: nn.Module, batch: dict[str, Any], objective, step: int) -> tuple[Tensor, Tensor]:
        inputs, targets = batch["inputs"], batch["targets"]
        base = unwrap(model)
        with collect_aux_losses() as aux:
            h, context = embed(model, inputs)
            for block in blocks_of(model, "matryoshka"):
                h = run_block(block, h)
            z = base.backbone.norm(h)
            losses = [
                c * objective.loss(prefix_readout(base, z, context, m), targets)
                for m, c in zip(self.dims, self.weights)
            ]
            loss = torch.stack(losses).sum() / sum(self.weights)
            total = loss + aux_total(aux, loss)
        return total, base.head(z, base.stem, context)

    def evaluate_variants(self, model: nn.Module, evaluate: Callable[[nn.Module], Any]) -> dict[str, Any]:
        dim = unwrap(model).backbone.dim
        return {
            f"dim{m}": metrics_row(evaluate(PrefixNetwork(model, m)), dim=m, embedding_fraction=m / dim)
            for m in self.dims
        }


def prefix_readout(model: nn.Module, z: Tensor, context: dict[str, Any], m: int) -> Tensor:
    """The head reading only the first ``m`` channels of the normalised representation ``z``."""
    mask = torch.zeros(z.shape[-1], device=z.device, dtype=z.dtype)
    mask[:m] = 1
    return model.head(z * mask, model.stem, context)


class PrefixNetwork(nn.Module):
    """The model read out through the first ``m`` channels of its representation."""

    def __init__(self, model: nn.Module, m: int) -> None:
        super().__init__()
        self.model, self.m = model, m

    def forward(self, inputs: Any, **kwargs: Any) -> tuple[Tensor, None]:
        base = unwrap(self.model)
        h, context = embed(base, inputs)
        for block in blocks_of(base, "matryoshka"):
            h = run_block(block, h)
        return prefix_readout(base, base.backbone.norm(h), context, self.m), None


@METHODS.register(
    "ofa",
    paper="Once-for-All: Train One Network and Specialize it for Efficient Deployment",
    arxiv="1908.09791",
    summary="Progressive shrinking: full network, then elastic depth, then elastic width, with KD.",
    test_kwargs={"widths": [0.5, 1.0], "phase_steps": [2, 4]},
)
class OnceForAll(NestedMethod):
    """Once-for-All progressive shrinking (arXiv:1908.09791) over the width x depth grid.

    Steps ``[0, phase_steps[0])`` train the full network only; ``[phase_steps[0], phase_steps[1])``
    add one sub-network per step with a sampled depth at full width; from ``phase_steps[1]`` on
    both depth and width are sampled. Each sub-network learns from the labels and, with weight
    ``kd_weight``, from the full network's prediction (detached), as OFA distils from the largest.
    """

    owner = "ofa"

    def __init__(
        self,
        widths: list[float] = (0.25, 0.5, 0.75, 1.0),
        depths: list[int] | None = None,
        phase_steps: list[int] = (100, 200),
        kd_weight: float = 1.0,
        temperature: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(list(widths), depths, seed)
        phase_steps = list(phase_steps)
        check(
            len(phase_steps) == 2 and 0 <= phase_steps[0] <= phase_steps[1],
            "ofa",
            "phase_steps",
            phase_steps,
            "two step counts [elastic depth from, elastic width from], non-decreasing",
        )
        check(kd_weight >= 0, "ofa", "kd_weight", kd_weight, "expected >= 0")
        self.phase_steps, self.kd_weight, self.temperature = phase_steps, kd_weight, temperature
        self.last_sampled: tuple[float, int] | None = None

    def phase(self, step: int) -> int:
        """0: full network; 1: + elastic depth; 2: + elastic width."""
        return sum(step >= s for s in self.phase_steps)

    def loss(self, model: nn.Module, batch: dict[str, Any], objective, step: int) -> tuple[Tensor, Tensor]:
        inputs, targets = batch["inputs"], batch["targets"]
        phase = self.phase(step)
        with collect_aux_losses() as aux:
            pred = subnet_forward(model, inputs, *self.full)
            loss = objective.loss(pred, targets)
            self.last_sampled = None
            if phase > 0:
                widths = self.widths if phase == 2 else [max(self.widths)]
                width, depth = self.last_sampled = self.sample(widths, self.depths)
                sub = subnet_forward(model, inputs, width, depth)
                sub_loss = objective.loss(sub, targets)
                sub_loss = sub_loss + self.kd_weight * soft_target_loss(sub, pred, targets, self.temperature)
                loss = (loss + sub_loss) / 2
            total = loss + aux_total(aux, loss)
        return total, pred
