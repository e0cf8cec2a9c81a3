"""Training methods: the hook interface, plain backpropagation, gradient noise, shared helpers.

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
import random
from collections.abc import Callable
from copy import deepcopy
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


# -- shared helpers: a Model(stem, backbone, head) run piece by piece ------------------------------


class MethodModel(nn.Module):
    """A model plus the modules a method trains beside it (auxiliary heads, feedback networks).

    The trainer builds its optimiser from ``wrapped.parameters()``, so the extras are trained
    with the model; calling it is calling the model (or the method's own inference, ``infer``),
    and ``stem`` / ``backbone`` / ``head`` / ``state_size`` are the model's, so evaluation and cost
    measurement see the model they expect. ``unwrap`` gives the bare model back.
    """

    def __init__(
        self,
        model: nn.Module,
        extras: dict[str, nn.Module] | None = None,
        infer: Callable[..., tuple[Tensor, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.extras = nn.ModuleDict(extras or {})
        # Kept out of the module tree: the method that owns it is not a module.
        self.__dict__["_infer"] = infer

    def forward(self, inputs: Any, **kwargs: Any) -> tuple[Tensor, Any]:
        if self._infer is not None:
            return self._infer(inputs, **kwargs)
        return self.model(inputs, **kwargs)

    @property
    def stem(self) -> nn.Module:
        return self.model.stem

    @property
    def backbone(self) -> nn.Module:
        return self.model.backbone

    @property
    def head(self) -> nn.Module:
        return self.model.head

    def state_size(self, seq_len: int) -> int:
        return self.model.state_size(seq_len)

    def init_state(self, batch_size: int, **kwargs: Any) -> Any:
        return self.model.init_state(batch_size, **kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a :class:`MethodModel` (or the model itself)."""
    return model.model if isinstance(model, MethodModel) else model


def blocks_of(model: nn.Module, owner: str) -> nn.ModuleList:
    """The residual blocks of a ``Model(stem, backbone, head)``; a clear error for anything else."""
    model = unwrap(model)
    ok = all(hasattr(model, a) for a in ("stem", "backbone", "head")) and hasattr(model.backbone, "blocks")
    check(
        ok,
        owner,
        "model",
        type(model).__name__,
        "this method runs a Model(stem, backbone, head) block by block (any registered model)",
    )
    return model.backbone.blocks


def model_kind(model: nn.Module) -> str | None:
    """The task kind the model's head reads out (``classify``, ``next_token``, ...), from the registry."""
    from mixerlab.registry import HEADS

    head_type = type(unwrap(model).head)
    for entry in HEADS:
        if entry.builder is head_type:
            return entry.meta.get("kind")
    return None


def require_kind(model: nn.Module, owner: str, kinds: tuple[str, ...], why: str) -> str:
    """The model's kind, or a ConfigError naming the method when it is not one of ``kinds``."""
    kind = model_kind(model)
    check(kind in kinds, owner, "task kind", kind, f"this method needs a model of kind {list(kinds)}: {why}")
    return kind


def embed(model: nn.Module, inputs: Any) -> tuple[Tensor, dict[str, Any]]:
    """The stem: task inputs -> tokens ``[B, T, D]`` and the context the head needs back."""
    return unwrap(model).stem(inputs)


def run_block(block: nn.Module, h: Tensor) -> Tensor:
    """One residual block ``[B, T, D] -> [B, T, D]`` (its mixer state is not needed in training)."""
    return block(h)[0]


def read_out(model: nn.Module, h: Tensor, context: dict[str, Any]) -> Tensor:
    """The backbone's final norm and the head: tokens ``[B, T, D]`` -> the task's prediction."""
    model = unwrap(model)
    return model.head(model.backbone.norm(h), model.stem, context)


def detached_forward(
    model: nn.Module, inputs: Any, *, detach_head: bool = True
) -> tuple[list[Tensor], Tensor, dict[str, Any]]:
    """Stem and blocks with every block's input detached, so no gradient crosses a block boundary.

    Returns ``[h_0 (stem), h_1, ..., h_L]`` (each the output of its piece, attached only to that
    piece's parameters), the head's prediction and the stem's context. With ``detach_head`` the
    head reads ``h_L`` detached (it learns alone); without, the last block and the head are one
    local module, as in supervised local learning.
    """
    h, context = embed(model, inputs)
    outputs = [h]
    for block in blocks_of(model, "method"):
        outputs.append(run_block(block, outputs[-1].detach()))
    top = outputs[-1].detach() if detach_head else outputs[-1]
    return outputs, read_out(model, top, context), context


def forward_pieces(model: nn.Module, inputs: Any) -> tuple[list[Tensor], Tensor]:
    """The plain forward pass, keeping every piece's output: ``[h_0 (stem), h_1, ..., h_L]``, pred."""
    h, context = embed(model, inputs)
    outputs = [h]
    for block in blocks_of(model, "method"):
        outputs.append(run_block(block, outputs[-1]))
    return outputs, read_out(model, outputs[-1], context)


def matching_piece(index: int, depth: int, other_depth: int) -> int:
    """The piece of a ``other_depth``-block network at the same relative depth as ``index`` of ``depth``."""
    return round(index * other_depth / depth) if depth else 0


def metrics_row(metrics: Any, **facts: Any) -> dict[str, Any]:
    """One ``evaluate_variants`` entry: the metric by name plus what the variant costs."""
    return {metrics.name: metrics.value, **facts}


def num_classes(model: nn.Module, owner: str) -> int:
    """Classes (or vocabulary) the head scores: the width of its last linear map."""
    head = unwrap(model).head
    layer = head if isinstance(head, nn.Linear) else getattr(head, "proj", None)
    check(
        isinstance(layer, nn.Linear),
        owner,
        "model.head",
        type(head).__name__,
        "a head ending in a linear map over the classes (classify, lm)",
    )
    return layer.out_features


def fresh_copy(module: nn.Module) -> nn.Module:
    """A deep copy with newly drawn weights (an auxiliary head shaped like the model's own)."""
    copy = deepcopy(module)
    for m in copy.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
    return copy


def features(h: Tensor, targets: Tensor, stem: nn.Module) -> tuple[Tensor, Tensor]:
    """Tokens to the rows a per-example or per-token local loss reads: ``([M, D], [M])``.

    A class target ``[B]`` pairs with the mean of the non-prefix tokens (``[B, D]``); a token
    target ``[B, T]`` pairs with each scored position (``-100`` ones are dropped).
    """
    if targets.dim() == 2 and h.shape[:2] == targets.shape:
        keep = targets != -100
        return h[keep], targets[keep]
    prefix = getattr(stem, "num_prefix_tokens", 0)
    return h[:, prefix:].mean(dim=1), targets


def aux_total(aux: Any, like: Tensor) -> Tensor:
    """The layers' auxiliary losses (MoE balancing, ...) collected during a forward pass."""
    return aux.total().to(like.device)


# -- reference networks (a distillation teacher, a guidance guide) ----------------------------------

REFERENCE_KEYS = ("checkpoint", "model", "task", "train", "seed")


def save_reference(path: str, model: nn.Module, model_config: Any, task_config: Any) -> None:
    """Save a model as a reference network: its weights with the configs that rebuild it.

    The file is a safe checkpoint (:mod:`mixerlab.train.checkpoint`: safetensors plus JSON), so
    :func:`load_reference` reads it without running any code.
    """
    from mixerlab.train.checkpoint import save_checkpoint
    from mixerlab.train.config import to_dict

    save_checkpoint(
        path,
        {
            "model": to_dict(model_config),
            "task": to_dict(task_config),
            "state_dict": unwrap(model).state_dict(),
        },
    )


def load_reference(spec: Any, owner: str, field: str) -> nn.Module:
    """A frozen reference network from a spec (evaluation mode, no gradients).

    ``spec`` is a module, or a dict with one of:

    - ``checkpoint``: a file of :func:`save_reference` (or a trainer checkpoint), loaded safely;
    - ``model`` and ``task``: a model config built for that task's sizes; with ``train`` (a train
      config) it is trained on the task first with plain backpropagation, else it keeps its
      initial weights (drawn from ``seed``, default 0). The caller's random state is untouched.
    """
    if isinstance(spec, nn.Module):
        module = spec
    else:
        check(isinstance(spec, dict), owner, field, spec, "a dict with 'checkpoint', or 'model' and 'task'")
        unknown = sorted(set(spec) - set(REFERENCE_KEYS))
        check(
            not unknown,
            owner,
            f"{field}.{unknown[0] if unknown else ''}",
            spec,
            f"keys are {list(REFERENCE_KEYS)}",
        )
        # Building (and training) the reference must not shift the caller's random streams.
        py_state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            module = _build_reference(spec, owner, field)
        random.setstate(py_state)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _build_reference(spec: dict[str, Any], owner: str, field: str) -> nn.Module:
    from mixerlab.train.config import ModelConfig, RunConfig, from_dict
    from mixerlab.train.trainer import Trainer, build_model, build_task

    if "checkpoint" in spec:
        from mixerlab.train.checkpoint import load_checkpoint

        payload = load_checkpoint(spec["checkpoint"])
        if "config" in payload:  # a trainer checkpoint: its run config and (maybe wrapped) weights
            model_cfg, task_cfg, state = (
                payload["config"]["model"],
                payload["config"]["task"],
                payload["model"],
            )
            if any(k.startswith("model.") for k in state):
                state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
        else:
            check(
                {"model", "task", "state_dict"} <= set(payload),
                owner,
                f"{field}.checkpoint",
                spec["checkpoint"],
                "a file written by save_reference (model and task configs with a state_dict)",
            )
            model_cfg, task_cfg, state = payload["model"], payload["task"], payload["state_dict"]
        task = build_task(from_dict(RunConfig, {"task": task_cfg}))
        model = build_model(from_dict(ModelConfig, model_cfg), task)
        model.load_state_dict(state)
        return model
    check("model" in spec and "task" in spec, owner, field, spec, "give 'checkpoint', or 'model' and 'task'")
    if "train" in spec:
        run = from_dict(RunConfig, {"task": spec["task"], "model": spec["model"], "train": spec["train"]})
        trainer = Trainer(run, progress=False)
        trainer.fit()
        return unwrap(trainer.model)
    torch.manual_seed(spec.get("seed", 0))
    task = build_task(from_dict(RunConfig, {"task": spec["task"]}))
    return build_model(from_dict(ModelConfig, spec["model"]), task)
