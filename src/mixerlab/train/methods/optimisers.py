"""Optimiser choices made through the method hooks: AdaMod (arXiv:1910.12249).

The trainer builds AdamW over ``model.parameters()`` and steps it; a method cannot replace it.
It can, however, take the update over: ``after_backward`` moves every gradient into the method
(so AdamW, which skips parameters without a gradient, leaves them alone, weight decay included)
and ``after_step`` applies its own rule. The trainer's learning rate (its ``lr``, warm-up and
cosine schedule) still drives the step: a scalar *probe* parameter is given the gradient 1 each
step, and Adam's update of a constant unit gradient is exactly the current learning rate, so the
probe's move reads the scheduled rate without touching the trainer.

Shapes: per-parameter state tensors have the parameter's shape.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mixerlab.errors import check
from mixerlab.registry import METHODS
from mixerlab.train.methods.base import MethodModel, TrainingMethod


class LearningRateProbe(nn.Module):
    """A scalar whose Adam update under a unit gradient equals the optimiser's learning rate."""

    def __init__(self) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.zeros(()))


@METHODS.register(
    "adamod",
    paper="An Adaptive and Momental Bound Method for Stochastic Learning (AdaMod)",
    arxiv="1910.12249",
    summary="Adam whose per-element step sizes are capped by their own exponential average.",
    test_kwargs={"beta3": 0.99},
)
class AdaMod(TrainingMethod):
    """AdaMod (arXiv:1910.12249): Adam with step sizes bounded by an exponential average of themselves.

    Per element, with Adam's bias-corrected moments ``m_hat, v_hat`` and learning rate ``lr``::

        eta_t = lr / (sqrt(v_hat_t) + eps)          # Adam's step size
        s_t   = beta3 s_{t-1} + (1 - beta3) eta_t   # its exponential average (s_0 = 0)
        p    -= min(eta_t, s_t) * m_hat_t

    so the huge early step sizes of Adam are smoothed away (the first step is ``1 - beta3`` of
    Adam's). ``lr`` is the trainer's scheduled learning rate; ``weight_decay`` is AdaMod's own L2
    term (the trainer's AdamW decay does not apply to parameters this method updates);
    ``grad_clip`` clips the global gradient norm as the trainer would (None: no clipping).
    """

    def __init__(
        self,
        betas: tuple[float, float] = (0.9, 0.999),
        beta3: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        grad_clip: float | None = 1.0,
    ) -> None:
        betas = tuple(betas)
        check(
            len(betas) == 2 and all(0 <= b < 1 for b in betas),
            "adamod",
            "betas",
            betas,
            "two values in [0, 1)",
        )
        check(0 <= beta3 < 1, "adamod", "beta3", beta3, "expected a value in [0, 1)")
        check(eps > 0, "adamod", "eps", eps, "expected > 0")
        check(weight_decay >= 0, "adamod", "weight_decay", weight_decay, "expected >= 0")
        check(grad_clip is None or grad_clip > 0, "adamod", "grad_clip", grad_clip, "expected > 0 or None")
        self.betas, self.beta3, self.eps = betas, beta3, eps
        self.weight_decay, self.grad_clip = weight_decay, grad_clip
        self.steps = 0
        self.state: dict[str, dict[str, Tensor]] = {}
        self._grads: dict[str, Tensor] = {}
        self._wrapped: MethodModel | None = None
        # The learning rate of the last step, read from the probe (for tests and logs).
        self.last_lr = float("nan")

    def wrap(self, model: nn.Module) -> nn.Module:
        self._wrapped = MethodModel(model, {"lr_probe": LearningRateProbe()})
        return self._wrapped

    def _params(self, model: nn.Module) -> dict[str, nn.Parameter]:
        return {
            name: p
            for name, p in model.named_parameters()
            if p.requires_grad and not name.startswith("extras.lr_probe")
        }

    @torch.no_grad()
    def after_backward(self, model: nn.Module, step: int) -> None:
        self._grads = {}
        for name, p in self._params(model).items():
            if p.grad is not None:
                self._grads[name] = p.grad
                p.grad = None  # AdamW skips a parameter without a gradient
        probe = model.extras["lr_probe"].value
        probe.zero_()
        probe.grad = torch.ones_like(probe)

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int) -> None:
        probe = model.extras["lr_probe"].value
        lr = -float(probe) * (1 + 1e-8)  # AdamW moved it by -lr * 1 / (1 + eps) from 0
        probe.zero_()
        self.last_lr = lr
        params = self._params(model)
        grads = self._grads
        self._grads = {}
        if self.grad_clip is not None and grads:
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(g) for g in grads.values()])
            )
            if norm > self.grad_clip:
                for g in grads.values():
                    g.mul_(self.grad_clip / (norm + 1e-6))
        self.steps += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1**self.steps, 1 - b2**self.steps
        for name, g in grads.items():
            p = params[name]
            if self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            st = self.state.get(name)
            if st is None:
                st = self.state[name] = {
                    "exp_avg": torch.zeros_like(p),
                    "exp_avg_sq": torch.zeros_like(p),
                    "exp_avg_lr": torch.zeros_like(p),
                }
            st["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
            st["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
            step_size = lr / ((st["exp_avg_sq"] / c2).sqrt() + self.eps)
            st["exp_avg_lr"].mul_(self.beta3).add_(step_size, alpha=1 - self.beta3)
            p.sub_(torch.minimum(step_size, st["exp_avg_lr"]) * (st["exp_avg"] / c1))

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "state": self.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = state.get("steps", 0)
        self.state = state.get("state", {})
