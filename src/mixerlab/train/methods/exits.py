"""Dynamic depth: early exits chosen by confidence, and test-time depth by looping or skipping blocks.

- ``early_exit`` (BranchyNet, arXiv:1709.01686): a head after every block, all trained jointly;
  at inference an example leaves at the first exit whose confidence (the largest softmax
  probability; for a sequence, its least confident position) reaches a threshold, so confident
  examples run fewer blocks. ``evaluate_variants`` reports each exit alone and each threshold
  with its accuracy and the share of blocks run.
- ``loop_depth`` (chain-of-layers, "Skip a Layer or Loop it?", arXiv:2507.07996): the trained
  blocks are re-composed at test time -- each skipped, each looped, the stack looped -- and each
  chain is evaluated with its depth; training can randomly loop or skip blocks so that the model
  is robust to that.

Shapes: exit logits ``[B, C]`` (per example) or ``[B, T, V]`` (per position, one exit per
sequence); confidences ``[B]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from mixerlab.errors import check
from mixerlab.layers.aux_loss import collect_aux_losses
from mixerlab.registry import METHODS
from mixerlab.train.methods.base import (
    MethodModel,
    TrainingMethod,
    aux_total,
    blocks_of,
    embed,
    fresh_copy,
    metrics_row,
    read_out,
    require_kind,
    run_block,
    unwrap,
)


def confidence(logits: Tensor) -> Tensor:
    """``[B]``: the largest softmax probability; for ``[B, T, V]`` the least confident position's."""
    top = logits.float().softmax(-1).amax(-1)
    return top if top.dim() == 1 else top.amin(dim=-1)


class ExitHead(nn.Module):
    """An intermediate exit: a fresh copy of the backbone's final norm and of the model's head."""

    def __init__(self, norm: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.norm, self.head = fresh_copy(norm), fresh_copy(head)

    def forward(self, h: Tensor, stem: nn.Module, context: dict[str, Any]) -> Tensor:
        return self.head(self.norm(h), stem, context)


def exit_logits(model: MethodModel, index: int, h: Tensor, context: dict[str, Any]) -> Tensor:
    """The prediction of exit ``index`` (0-based block) from that block's output ``h``."""
    exits = model.extras["exits"]
    if index < len(exits):
        return exits[index](h, unwrap(model).stem, context)
    return read_out(model, h, context)  # the last exit is the model's own head


class EarlyExitNetwork(nn.Module):
    """The model run with exits: each example stops at the first exit at least ``threshold`` confident.

    Blocks after an example's exit are not run for it (the batch shrinks). ``exit_counts[l]``
    counts examples that left after block ``l + 1`` since the last :meth:`reset`.
    """

    def __init__(self, model: MethodModel, threshold: float) -> None:
        super().__init__()
        self.model, self.threshold = model, threshold
        self.exit_counts = [0] * len(blocks_of(model, "early_exit"))

    def reset(self) -> None:
        self.exit_counts = [0] * len(self.exit_counts)

    def compute_fraction(self) -> float:
        """Mean share of the blocks run per example since the last reset."""
        total = sum(self.exit_counts)
        blocks = len(self.exit_counts)
        return (
            sum((i + 1) * n for i, n in enumerate(self.exit_counts)) / (total * blocks)
            if total
            else float("nan")
        )

    def forward(self, inputs: Any, **kwargs: Any) -> tuple[Tensor, None]:
        h, context = embed(self.model, inputs)
        blocks = blocks_of(self.model, "early_exit")
        active = torch.arange(h.shape[0], device=h.device)
        out: Tensor | None = None
        for i, block in enumerate(blocks):
            h = run_block(block, h)
            logits = exit_logits(self.model, i, h, context)
            if out is None:
                out = logits.new_zeros((len(active), *logits.shape[1:]))
            leave = (
                confidence(logits) >= self.threshold
                if i + 1 < len(blocks)
                else torch.ones_like(active, dtype=torch.bool)
            )
            out[active[leave]] = logits[leave]
            self.exit_counts[i] += int(leave.sum())
            active, h = active[~leave], h[~leave]
            if len(active) == 0:
                break
        return out, None


@METHODS.register(
    "early_exit",
    paper="BranchyNet: Fast Inference via Early Exiting from Deep Neural Networks",
    arxiv="1709.01686",
    summary="Jointly trained exits after every block; inference exits when confident enough.",
    test_kwargs={"thresholds": [0.6, 0.9]},
)
class EarlyExit(TrainingMethod):
    """Early exits (BranchyNet, arXiv:1709.01686): ``loss = sum_l w_l L(exit_l) / sum_l w_l``.

    Exit ``l`` reads block ``l``'s output through a fresh copy of the final norm and head; the last
    exit is the model's own head, so the model's plain forward is unchanged. ``weights`` (default
    all 1) are the ``w_l``. ``thresholds`` are the confidences evaluated after training (1.0 and
    above: never exit early). Only for class outputs (``classify``, ``next_token``).
    """

    def __init__(
        self, weights: list[float] | None = None, thresholds: list[float] = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
    ) -> None:
        thresholds = sorted(float(t) for t in thresholds)
        check(all(t >= 0 for t in thresholds), "early_exit", "thresholds", thresholds, "confidences >= 0")
        self._weights, self.thresholds = weights, thresholds

    def wrap(self, model: nn.Module) -> nn.Module:
        blocks = blocks_of(model, "early_exit")
        require_kind(model, "early_exit", ("classify", "next_token"), "an exit is chosen by class confidence")
        weights = list(self._weights) if self._weights else [1.0] * len(blocks)
        check(len(weights) == len(blocks), "early_exit", "weights", weights, f"one per block ({len(blocks)})")
        self.weights = weights
        base = unwrap(model)
        exits = nn.ModuleList(ExitHead(base.backbone.norm, base.head) for _ in range(len(blocks) - 1))
        return MethodModel(model, {"exits": exits})

    def loss(self, model: nn.Module, batch: dict[str, Any], objective, step: int) -> tuple[Tensor, Tensor]:
        inputs, targets = batch["inputs"], batch["targets"]
        with collect_aux_losses() as aux:
            h, context = embed(model, inputs)
            losses = []
            for i, block in enumerate(blocks_of(model, "early_exit")):
                h = run_block(block, h)
                pred = exit_logits(model, i, h, context)
                losses.append(self.weights[i] * objective.loss(pred, targets))
            loss = torch.stack(losses).sum() / sum(self.weights)
            total = loss + aux_total(aux, loss)
        return total, pred

    def evaluate_variants(self, model: nn.Module, evaluate: Callable[[nn.Module], Any]) -> dict[str, Any]:
        depth = len(blocks_of(model, "early_exit"))
        rows = {}
        for i in range(depth):
            rows[f"exit{i + 1}"] = metrics_row(
                evaluate(FixedExit(model, i)), compute_fraction=(i + 1) / depth
            )
        for t in self.thresholds:
            net = EarlyExitNetwork(model, t)
            metrics = evaluate(net)
            rows[f"threshold{t:g}"] = metrics_row(
                metrics,
                threshold=t,
                compute_fraction=net.compute_fraction(),
                exit_counts=list(net.exit_counts),
            )
        return rows


class FixedExit(nn.Module):
    """The model cut after block ``index + 1`` and read by that block's exit."""

    def __init__(self, model: MethodModel, index: int) -> None:
        super().__init__()
        self.model, self.index = model, index

    def forward(self, inputs: Any, **kwargs: Any) -> tuple[Tensor, None]:
        h, context = embed(self.model, inputs)
        for block in list(blocks_of(self.model, "early_exit"))[: self.index + 1]:
            h = run_block(block, h)
        return exit_logits(self.model, self.index, h, context), None


class Chain(nn.Module):
    """The model with its blocks applied in the order ``chain`` (block indices; repeats loop)."""

    def __init__(self, model: nn.Module, chain: list[int]) -> None:
        super().__init__()
        self.model, self.chain = model, list(chain)

    def forward(self, inputs: Any, **kwargs: Any) -> tuple[Tensor, None]:
        return chain_forward(self.model, inputs, self.chain), None


def chain_forward(model: nn.Module, inputs: Any, chain: list[int]) -> Tensor:
    blocks = blocks_of(model, "loop_depth")
    h, context = embed(model, inputs)
    for i in chain:
        h = run_block(blocks[i], h)
    return read_out(model, h, context)


class MostConfidentChain(nn.Module):
    """Per example, the prediction of the chain that is most confident about it (label-free choice)."""

    def __init__(self, model: nn.Module, chains: list[list[int]]) -> None:
        super().__init__()
        self.model, self.chains = model, chains
        self.chosen_blocks = 0
        self.examples = 0

    def forward(self, inputs: Any, **kwargs: Any) -> tuple[Tensor, None]:
        preds = torch.stack([chain_forward(self.model, inputs, c) for c in self.chains])  # [K, B, ...]
        conf = torch.stack([confidence(p) for p in preds])  # [K, B]
        best = conf.argmax(0)  # [B]
        lengths = torch.tensor([len(c) for c in self.chains], device=best.device)
        self.chosen_blocks += int(lengths[best].sum())
        self.examples += len(best)
        return preds[best, torch.arange(len(best), device=best.device)], None


@METHODS.register(
    "loop_depth",
    paper="Skip a Layer or Loop it? Test-Time Depth Adaptation of Pretrained LLMs",
    arxiv="2507.07996",
    summary="Blocks skipped or looped at test time (chains of layers), optionally trained for it.",
    test_kwargs={"p_loop": 0.5, "p_skip": 0.25},
)
class LoopDepth(TrainingMethod):
    """Test-time depth (chain-of-layers, arXiv:2507.07996): skip or loop blocks of the trained model.

    Training is backpropagation, except that with probability ``p_loop`` one random block is run
    ``repeats`` times and with probability ``p_skip`` one random block is skipped (both 0: plain
    training, as for the paper's pretrained models). ``evaluate_variants`` evaluates the full
    chain, every chain with one block skipped, with one block looped ``repeats`` times, the whole
    stack looped, and per example the most confident of these chains, each with its depth as a
    share of the model's (``compute_fraction``).
    """

    def __init__(self, p_loop: float = 0.0, p_skip: float = 0.0, repeats: int = 2, seed: int = 0) -> None:
        check(0 <= p_loop <= 1, "loop_depth", "p_loop", p_loop, "a probability in [0, 1]")
        check(0 <= p_skip <= 1, "loop_depth", "p_skip", p_skip, "a probability in [0, 1]")
        check(isinstance(repeats, int) and repeats >= 2, "loop_depth", "repeats", repeats, "an integer >= 2")
        self.p_loop, self.p_skip, self.repeats = p_loop, p_skip, repeats
        self.generator = torch.Generator().manual_seed(seed)
        self.last_chain: list[int] = []

    def wrap(self, model: nn.Module) -> nn.Module:
        blocks_of(model, "loop_depth")
        return model

    def _draw(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def train_chain(self, depth: int) -> list[int]:
        chain = list(range(depth))
        if self.p_loop and self._draw() < self.p_loop:
            i = int(torch.randint(depth, (), generator=self.generator))
            chain = chain[: i + 1] + [i] * (self.repeats - 1) + chain[i + 1 :]
        if depth > 1 and self.p_skip and self._draw() < self.p_skip:
            i = int(torch.randint(depth, (), generator=self.generator))
            chain = [b for b in chain if b != i]
        return chain

    def loss(self, model: nn.Module, batch: dict[str, Any], objective, step: int) -> tuple[Tensor, Tensor]:
        self.last_chain = self.train_chain(len(blocks_of(model, "loop_depth")))
        with collect_aux_losses() as aux:
            pred = chain_forward(model, batch["inputs"], self.last_chain)
            loss = objective.loss(pred, batch["targets"])
            total = loss + aux_total(aux, loss)
        return total, pred

    def chains(self, depth: int) -> dict[str, list[int]]:
        full = list(range(depth))
        out = {"full": full}
        if depth > 1:
            out.update({f"skip{i + 1}": [b for b in full if b != i] for i in range(depth)})
        out.update(
            {f"loop{i + 1}": full[: i + 1] + [i] * (self.repeats - 1) + full[i + 1 :] for i in range(depth)}
        )
        out[f"stack_x{self.repeats}"] = full * self.repeats
        return out

    def evaluate_variants(self, model: nn.Module, evaluate: Callable[[nn.Module], Any]) -> dict[str, Any]:
        depth = len(blocks_of(model, "loop_depth"))
        chains = self.chains(depth)
        rows = {
            name: metrics_row(evaluate(Chain(model, chain)), chain=chain, compute_fraction=len(chain) / depth)
            for name, chain in chains.items()
        }
        # Label-free per-example choice; it runs every chain, so its search cost is their sum.
        chooser = MostConfidentChain(model, list(chains.values()))
        metrics = evaluate(chooser)
        rows["most_confident"] = metrics_row(
            metrics,
            compute_fraction=chooser.chosen_blocks / max(chooser.examples, 1) / depth,
            search_compute_fraction=sum(len(c) for c in chains.values()) / depth,
        )
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])
