"""ExcelFormer's mixup schemes (arXiv:2301.02819) as a training method: Hid-Mix and Feat-Mix.

Both pair each row of a batch with a row of a random permutation of it and train on the mix:

- ``hid_mix`` mixes embedding dimensions: ``z = S_H * z_1 + (1 - S_H) * z_2`` where ``S_H`` keeps
  ``round(lam * D)`` of the ``D`` dimensions of row 1 (the same for every field), and the target
  is ``lam_H y_1 + (1 - lam_H) y_2`` with ``lam_H`` the fraction of dimensions kept;
- ``feat_mix`` mixes whole fields of the inputs: ``x = S_F * x_1 + (1 - S_F) * x_2`` where
  ``S_F`` keeps ``round(lam * M)`` of the ``M`` fields of row 1, and the target weight is the share
  of the fields' importance kept: ``Lam = sum_{j kept} I_j / sum_j I_j`` (ExcelFormer's mutual
  information scores, the model's ``importance``).

``lam ~ Beta(beta, beta)`` per row. A classification target mixes the losses (cross-entropy to
the soft label ``Lam onehot(y_1) + (1 - Lam) onehot(y_2)``, equal to ``Lam CE_1 + (1 - Lam) CE_2``);
a regression target is mixed itself and scored with the task's objective. The embeddings are
what the model's ``embedding`` module returns (ExcelFormer's gated embedding), else its stem's
tokens (a method named ``embedding`` is not a module and does not count). Draws come from the
method's own generators, kept in the checkpoint.

Shapes: table inputs ``{"numerical": [B, F], "categorical": [B, K]}``, tokens ``[B, M, D]``,
``lam: [B]``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixerlab.errors import ConfigError, check, check_choice
from mixerlab.layers.aux_loss import collect_aux_losses
from mixerlab.registry import METHODS
from mixerlab.train.methods.base import TrainingMethod, unwrap

SCHEMES = ("hid_mix", "feat_mix")


@dataclass
class Mix:
    """One batch's mix: the partner of each row ``[B]``, the kept mask (``[B, M]`` fields or
    ``[B, D]`` dimensions, True = from the row itself) and the target weight ``lam: [B]``."""

    partner: Tensor
    keep: Tensor
    lam: Tensor

    def targets(self, targets: Tensor) -> Tensor:
        """The mixed regression target ``lam * y + (1 - lam) * y[partner]`` (any trailing shape)."""
        lam = self.lam.reshape(-1, *([1] * (targets.dim() - 1))).to(targets.dtype)
        return lam * targets + (1 - lam) * targets[self.partner]

    def soft_labels(self, targets: Tensor, num_classes: int) -> Tensor:
        """``[B, C]``: ``lam * onehot(y) + (1 - lam) * onehot(y[partner])``."""
        lam = self.lam[:, None]
        one = F.one_hot(targets, num_classes).to(lam.dtype)
        return lam * one + (1 - lam) * one[self.partner]


@METHODS.register(
    "excelformer_mixup",
    paper="ExcelFormer: Can a DNN be a Sure Bet for Tabular Prediction? (Hid-Mix, Feat-Mix)",
    arxiv="2301.02819",
    test_kwargs={"scheme": "hid_mix", "beta": 0.5},
)
class ExcelFormerMixup(TrainingMethod):
    """ExcelFormer's Hid-Mix and Feat-Mix (arXiv:2301.02819): train on mixed rows and mixed targets.

    ``scheme`` is ``hid_mix`` (any table model with an embedding or a stem) or ``feat_mix`` (a
    model with per-field ``importance``, i.e. ExcelFormer); ``beta`` the Beta distribution's
    parameter (the authors use 0.5).
    """

    def __init__(self, scheme: str = "hid_mix", beta: float = 0.5, seed: int = 0) -> None:
        check_choice("excelformer_mixup", "scheme", scheme, SCHEMES)
        check(beta > 0, "excelformer_mixup", "beta", beta, "expected > 0")
        self.scheme, self.beta = scheme, float(beta)
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = random.Random(seed)

    # -- the draws ---------------------------------------------------------------------------------

    def _lam(self, batch: int) -> Tensor:
        # torch's Beta distribution takes no generator; Python's own seeded one draws it.
        draws = [self.rng.betavariate(self.beta, self.beta) for _ in range(batch)]
        return torch.tensor(draws, dtype=torch.float64)

    def _keep(self, batch: int, width: int) -> Tensor:
        """``[B, width]`` bool with ``round(lam * width)`` True entries per row at random places."""
        counts = torch.round(self._lam(batch) * width).long()
        ranks = torch.rand(batch, width, generator=self.generator).argsort(-1).argsort(-1)
        return ranks < counts[:, None]

    def draw(self, batch: int, width: int, importance: Tensor | None = None) -> Mix:
        """A mix of ``batch`` rows over ``width`` fields (feat_mix) or dimensions (hid_mix)."""
        partner = torch.randperm(batch, generator=self.generator)
        keep = self._keep(batch, width)
        if importance is None:
            lam = keep.double().mean(-1)
        else:
            weights = importance.double().cpu()
            total = weights.sum()
            weights = weights / total if total > 0 else torch.full_like(weights, 1 / width)
            lam = (keep.double() * weights).sum(-1)
        return Mix(partner, keep, lam)

    # -- the hooks ---------------------------------------------------------------------------------

    def loss(self, model: nn.Module, batch: dict[str, Any], objective, step: int) -> tuple[Tensor, Tensor]:
        inputs, targets = batch["inputs"], batch["targets"]
        check(
            isinstance(inputs, dict),
            "excelformer_mixup",
            "inputs",
            type(inputs).__name__,
            "a table task's inputs {'numerical', 'categorical'}",
        )
        with collect_aux_losses() as aux:
            if self.scheme == "feat_mix":
                pred, mix = self._feat_mix(model, inputs)
            else:
                pred, mix = self._hid_mix(model, inputs)
            loss = mixed_loss(pred, targets, mix, objective)
            loss = loss + aux.total().to(loss.device)
        return loss, pred

    def _feat_mix(self, model: nn.Module, inputs: dict[str, Tensor]) -> tuple[Tensor, Mix]:
        importance = getattr(unwrap(model), "importance", None)
        if not isinstance(importance, Tensor):
            raise ConfigError(
                "excelformer_mixup",
                "scheme",
                "feat_mix",
                "Feat-Mix weighs fields by the model's importance (excelformer); use hid_mix for others",
            )
        mixed, mix = feat_mix_inputs(self, inputs, importance)
        return model(mixed)[0], mix

    def _hid_mix(self, model: nn.Module, inputs: dict[str, Tensor]) -> tuple[Tensor, Mix]:
        bare = unwrap(model)
        module = getattr(bare, "embedding", None)
        module = module if isinstance(module, nn.Module) else bare.stem
        batch = len(next(iter(inputs.values())))
        holder: dict[str, Mix] = {}

        def mix_tokens(_module: nn.Module, _inputs: Any, output: Any) -> Any:
            tokens = output[0] if isinstance(output, tuple) else output
            holder["mix"] = mix = self.draw(batch, tokens.shape[-1])
            mixed = hid_mix_tokens(tokens, mix)
            return (mixed, *output[1:]) if isinstance(output, tuple) else mixed

        handle = module.register_forward_hook(mix_tokens)
        try:
            pred = model(inputs)[0]
        finally:
            handle.remove()
        return pred, holder["mix"]

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {"generator": self.generator.get_state(), "rng": [version, list(internal), gauss]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])
        if "rng" in state:
            version, internal, gauss = state["rng"]
            self.rng.setstate((version, tuple(internal), gauss))


def feat_mix_inputs(
    method: ExcelFormerMixup, inputs: dict[str, Tensor], importance: Tensor
) -> tuple[dict, Mix]:
    """Feat-Mix of a table batch: each row keeps some fields and takes the rest from its partner."""
    numerical, categorical = inputs.get("numerical"), inputs.get("categorical")
    num = 0 if numerical is None else numerical.shape[1]
    batch = len(next(iter(inputs.values())))
    mix = method.draw(batch, importance.numel(), importance)
    keep = mix.keep.to(next(iter(inputs.values())).device)
    partner = mix.partner.to(keep.device)
    mixed = {}
    if numerical is not None:
        mixed["numerical"] = torch.where(keep[:, :num], numerical, numerical[partner])
    if categorical is not None:
        mixed["categorical"] = torch.where(keep[:, num:], categorical, categorical[partner])
    return mixed, mix


def hid_mix_tokens(tokens: Tensor, mix: Mix) -> Tensor:
    """Hid-Mix of tokens ``[B, M, D]``: kept dimensions ``[B, D]`` from the row, the rest from its partner."""
    keep = mix.keep.to(tokens.device)[:, None, :]
    return torch.where(keep, tokens, tokens[mix.partner.to(tokens.device)])


def mixed_loss(pred: Tensor, targets: Tensor, mix: Mix, objective) -> Tensor:
    """Classes: cross-entropy to the mixed soft labels; values: the objective on the mixed target."""
    if targets.is_floating_point():
        return objective.loss(pred, mix.targets(targets))
    check(
        pred.dim() == 2 and targets.dim() == 1,
        "excelformer_mixup",
        "pred.shape",
        tuple(pred.shape),
        "class logits [B, C] for class targets [B]",
    )
    soft = mix.soft_labels(targets, pred.shape[-1]).to(pred.device)
    return -(soft * pred.float().log_softmax(-1)).sum(-1).mean()
