"""Training methods: how a model learns, as hooks the trainer calls at fixed points of a step.

A method is registered in :data:`mixerlab.registry.METHODS` and selected by name in a run config
(``method: {name: gradient_noise, options: {eta: 0.3}}``). The trainer calls, in order::

    model = method.wrap(model)                      # once, before the optimiser is built
    loss, pred = method.loss(model, batch, objective, step)
    method.backward(loss, model, step)              # default: loss.backward()
    method.after_backward(model, step)              # e.g. add noise to the gradients
    optimizer.step()
    method.after_step(model, step)                  # e.g. update an EMA teacher
    method.state_dict() / method.load_state_dict()  # extra state kept in the checkpoint
    method.evaluate_variants(model, evaluate)       # after training: each sub-network / exit

These are enough for methods that replace backpropagation (override ``backward`` or ``loss`` and
detach between blocks), add noise to gradients, train nested sub-networks (override ``loss``)
or distil from a teacher (``wrap`` keeps the teacher, ``loss`` adds its term).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from mixerlab.errors import check
from mixerlab.layers.aux_loss import collect_aux_losses
from mixerlab.registry import METHODS


class TrainingMethod:
    """Plain end-to-end backpropagation; subclasses override the hooks they change."""

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def loss(self, model: nn.Module, batch: dict[str, Any], objective, step: int) -> tuple[Tensor, Tensor]:
        """The training loss of one batch (task loss + the layers' auxiliary losses) and the prediction."""
        with collect_aux_losses() as aux:
            pred, _ = model(batch["inputs"])
            loss = objective.loss(pred, batch["targets"])
            loss = loss + aux.total().to(loss.device)
        return loss, pred

    def backward(self, loss: Tensor, model: nn.Module, step: int) -> None:
        loss.backward()

    def after_backward(self, model: nn.Module, step: int) -> None:
        pass

    def after_step(self, model: nn.Module, step: int) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def evaluate_variants(self, model: nn.Module, evaluate: Callable[[nn.Module], Any]) -> dict[str, Any]:
        """Sub-networks or exits to evaluate after training: ``{name: metrics dict}`` (none here).

        ``evaluate(module)`` returns the task's :class:`~mixerlab.tasks.base.Metrics` of any module
        called like the model; a nested-width method evaluates each width, an early-exit method
        each threshold, adding what each costs (e.g. ``{"flops_fraction": 0.5}``).
        """
        return {}


@METHODS.register(
    "standard",
    paper="Learning representations by back-propagating errors",
    summary="End-to-end backpropagation of the objective (plus the layers' auxiliary losses).",
)
class Standard(TrainingMethod):
    """End-to-end backpropagation (Rumelhart, Hinton and Williams, Nature 1986)."""


@METHODS.register(
    "gradient_noise",
    paper="Adding Gradient Noise Improves Learning for Very Deep Networks",
    arxiv="1511.06807",
    test_kwargs={"eta": 0.3, "gamma": 0.55},
)
class GradientNoise(TrainingMethod):
    """Annealed Gaussian gradient noise (arXiv:1511.06807): ``g += N(0, eta / (1 + t)^gamma)``.

    ``t`` counts optimiser steps from 0; the paper's choices are ``eta`` in {0.01, 0.3, 1.0} and
    ``gamma = 0.55``. The noise is drawn from the method's own seeded generator, whose state is kept
    in the checkpoint, so a resumed run draws the same noise as an uninterrupted one.
    """

    def __init__(self, eta: float = 0.3, gamma: float = 0.55, seed: int = 0) -> None:
        check(eta >= 0, "gradient_noise", "eta", eta, "expected >= 0")
        check(gamma >= 0, "gradient_noise", "gamma", gamma, "expected >= 0")
        self.eta, self.gamma = eta, gamma
        self.generator = torch.Generator().manual_seed(seed)

    def std(self, step: int) -> float:
        return math.sqrt(self.eta / (1 + step) ** self.gamma)

    @torch.no_grad()
    def after_backward(self, model: nn.Module, step: int) -> None:
        std = self.std(step)
        for p in model.parameters():
            if p.grad is not None:
                noise = torch.randn(p.grad.shape, generator=self.generator, dtype=p.grad.dtype)
                p.grad.add_(noise.to(p.grad.device), alpha=std)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def create_method(name: str, options: dict[str, Any] | None = None) -> TrainingMethod:
    return METHODS.create(name, **(options or {}))
