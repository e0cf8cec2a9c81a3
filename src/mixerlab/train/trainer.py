"""The trainer: one model on one task, seeded, resumable, guarded against divergence.

AdamW with linear warm-up and cosine decay, gradient clipping, optional bf16 autocast, an
evaluation after every epoch, early stop at a target metric, a checkpoint after every epoch (a
killed run resumes from its last one and ends exactly where an uninterrupted run ends), and a
guard that stops a run whose loss becomes NaN/inf with a message.

The budget is a number of optimiser steps, ``min(epochs x steps per epoch, max_steps)``, and the
learning-rate schedule spans exactly that many, so a run is a function of its config and seed.
``max_cpu_seconds`` is only a safety cap (status ``time_limit``). A ``should_stop`` callable,
polled before every step, ends a run early with :class:`~mixerlab.train.interrupts.Interrupted`
(Ctrl-C); the checkpoint of the last finished epoch stays.

The parts: :func:`build_model` (the model of a config for a task), :func:`train_step` (one
optimiser step through the training method's hooks, :mod:`mixerlab.train.methods`),
:func:`~mixerlab.train.evaluate.evaluate` (the objective's metric, overall and per slice) and the
checkpoint (:mod:`mixerlab.train.checkpoint`). Transforms (:mod:`mixerlab.train.transforms`)
run before or after training.

Under ``torchrun`` the run is data-parallel (:mod:`mixerlab.train.distributed`): every rank
trains on its contiguous share of each global batch (``train.batch_size`` is the global size),
the ranks agree on every decision, and rank 0 alone writes checkpoints, progress and results.
With one process nothing of this runs.

Shapes: a batch is ``{"inputs": Tensor | dict[str, Tensor], "targets": Tensor}``.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mixerlab.errors import ConfigError
from mixerlab.layers.spec import split_spec
from mixerlab.models.model import tokens_per_example
from mixerlab.registry import BASELINES, HEADS, MODELS
from mixerlab.tasks.base import Metrics, Task, create_task
from mixerlab.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from mixerlab.train.config import ModelConfig, RunConfig, config_key, to_dict
from mixerlab.train.distributed import (
    DistContext,
    agree,
    backend_for,
    check_shardable,
    from_environment,
    from_writer,
    shard,
    weigh_share,
    wrap,
)
from mixerlab.train.evaluate import evaluate, objective_of
from mixerlab.train.interrupts import Interrupted
from mixerlab.train.loggers import Loggers, open_loggers, run_name
from mixerlab.train.methods import TrainingMethod, create_method
from mixerlab.train.schedules import warmup_cosine
from mixerlab.train.transforms import TransformContext, create_transform

# The head a task kind reads its prediction with, unless the model config names another.
KIND_HEADS = {"next_token": "lm", "classify": "classify", "regress": "regress", "forecast": "forecast"}


@dataclass
class TrainResult:
    """What a run produced. ``status`` is ``finished``, ``early_stopped``, ``time_limit`` or ``diverged``."""

    status: str
    metrics: Metrics | None
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    epochs: int = 0
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0
    train_tokens: int = 0
    train_examples: int = 0
    message: str = ""
    # What each transform reported (e.g. the sparsity reached) and the metric before "after" ones.
    transforms: list[dict[str, Any]] = field(default_factory=list)
    # A method's sub-networks or exits evaluated after training: {name: {metric, ...}}.
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / self.train_seconds if self.train_seconds > 0 else float("nan")

    @property
    def examples_per_second(self) -> float:
        return self.train_examples / self.train_seconds if self.train_seconds > 0 else float("nan")


def build_model(config: ModelConfig, task: Task | int) -> nn.Module:
    """The model of ``config`` for ``task`` (its kind and ``model_io()``; an int is a vocabulary size).

    The head follows the task's kind unless ``config.options`` names one; a head that does not
    read that kind (an LM head on an image task) is an error naming both.
    """
    if isinstance(task, int):
        io, kind = {"vocab_size": task}, "next_token"
    else:
        io, kind = task.model_io(), task.kind
    if config.name in BASELINES:
        raise ConfigError(
            "model", "name", config.name, "a baseline is fitted, not built (see bench/baselines)"
        )
    entry = MODELS.entry(config.name)
    kinds = entry.meta.get("kinds")
    if kinds is not None and kind not in kinds:
        fits = [e.name for e in MODELS if kind in e.meta.get("kinds", ())]
        raise ConfigError(
            "model",
            "name",
            config.name,
            f"it builds models for {list(kinds)} tasks; for a {kind!r} task use {fits}",
        )
    options = dict(config.options)
    params = entry.parameters()
    if "head" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        default = getattr(entry.builder, "keywords", {}).get("head")
        head = options.pop("head", None)
        if head is None:
            head = default if default is not None and _head_kind(default) == kind else KIND_HEADS[kind]
        if _head_kind(head) not in (None, kind):
            raise ConfigError(
                "model",
                "head",
                split_spec(head, "head")[0],
                f"the task is of kind {kind!r}; its head is {KIND_HEADS[kind]!r}",
            )
        options["head"] = head
    return MODELS.create(
        config.name,
        **io,
        dim=config.dim,
        depth=config.depth,
        mixer=config.mixer,
        channel_mixer=config.channel_mixer,
        norm=config.norm,
        **options,
    )


def _head_kind(head: Any) -> str | None:
    return HEADS.entry(split_spec(head, "head")[0]).meta.get("kind")


def build_task(config: RunConfig) -> Task:
    return create_task(config.task.name, **config.task.options)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def train_step(
    model: nn.Module,
    batch: dict[str, Any],
    *,
    method: TrainingMethod,
    objective,
    optimizer: torch.optim.Optimizer,
    step: int,
    grad_clip: float | None,
    bf16: bool,
    replica: nn.Module | None = None,
    ctx: DistContext | None = None,
) -> torch.Tensor:
    """One optimiser step through the method's hooks; returns the loss (not yet checked for NaN).

    Data-parallel: the forward pass goes through ``replica`` (``model`` wrapped by
    :func:`~mixerlab.train.distributed.wrap`, whose backward averages the gradients over the
    ranks of ``ctx``), the loss is weighted by this rank's share of the scored targets and the
    loss returned is the global batch's, taken before the backward pass so that a NaN on any
    rank skips the step on all.
    """
    device_type = next(model.parameters()).device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        loss, _ = method.loss(model if replica is None else replica, batch, objective, step)
    reported = loss
    if ctx is not None and ctx.enabled:
        loss, reported = weigh_share(loss, batch["targets"], ctx)
    if not torch.isfinite(reported):
        return reported
    optimizer.zero_grad(set_to_none=True)
    method.backward(loss, model, step)
    method.after_backward(model, step)
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    method.after_step(model, step)
    return reported


Callback = Callable[[dict[str, Any]], None]


class Trainer:
    """Train ``config.model`` on ``config.task`` with ``config.train`` and ``config.method``.

    ``checkpoint_path`` (optional) is written after every epoch and read at start: a run whose
    config matches the checkpoint's continues from it. ``progress`` shows a tqdm bar.

    ``config.train.loggers`` (TensorBoard, MLflow) get the config, every step's loss, every
    evaluation and, from the caller, the costs; they go under ``log_dir`` unless their options
    say where, grouped by ``log_group`` (the sweep's name). :meth:`close` ends them.
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        checkpoint_path: str | os.PathLike | None = None,
        progress: bool = True,
        on_epoch: Callback | None = None,
        log: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        log_dir: str | os.PathLike = "mixerlab-runs",
        log_group: str = "train",
    ) -> None:
        self.config = config
        self.log_dir, self.log_group = log_dir, log_group
        self.loggers = Loggers()
        self.checkpoint_path = checkpoint_path
        self.should_stop = should_stop or (lambda: False)
        self.progress = progress
        self.on_epoch = on_epoch
        self.log = log or (lambda msg: None)
        self.task = build_task(config)
        self.objective = objective_of(self.task, config.objective)
        self.device = torch.device(config.train.device)
        # Under torchrun: join the job's process group; rank 0 alone shows progress and logs.
        self.dist = from_environment(backend_for(self.device))
        if self.dist.enabled:
            if self.device.type == "cuda":
                self.device = torch.device("cuda", self.dist.local_rank)
            self.progress = self.progress and self.dist.is_writer
            self.log = self.log if self.dist.is_writer else (lambda msg: None)
        seed_everything(config.train.seed)
        self.transforms = [create_transform(spec) for spec in config.transforms]
        self.method = create_method(config.method.name, config.method.options)
        if self.dist.enabled:
            _check_data_parallel(config, self.method, self.dist)
        model = build_model(config.model, self.task).to(self.device)
        self.train_data = self.task.train_data(config.task.seed)
        self.eval_data = self.task.eval_data(config.task.seed)
        check_shardable(len(self.train_data), config.train.batch_size, self.dist)
        # Models that read the training rows before training (ExcelFormer ranks its fields by
        # mutual information, ModernNCA keeps them as retrieval candidates) get them here; a
        # resumed run then overwrites what they derived with the checkpoint's buffers.
        fit_to_data = getattr(model, "fit_to_data", None)
        if callable(fit_to_data):
            fit_to_data(self.train_data)
        self.transform_facts: list[dict[str, Any]] = []
        for transform, when in self.transforms:
            if when == "before":
                model, facts = transform.apply(model, self.transform_context())
                self.transform_facts.append({"name": type(transform).__name__, "when": when, **facts})
        self.model = self.method.wrap(model)

    def transform_context(self) -> TransformContext:
        """What a transform may read: the task, its training data (for calibration), the device."""
        return TransformContext(task=self.task, data=self.train_data, device=self.device)

    def evaluate(self) -> Metrics:
        return self._evaluate_model(self.model)

    def budget(self) -> tuple[int, int, int]:
        """``(steps per epoch, total steps, epochs)``: the run ends after ``total steps``."""
        cfg = self.config.train
        steps_per_epoch = math.ceil(len(self.train_data) / cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        return steps_per_epoch, total, math.ceil(total / steps_per_epoch)

    # -- the loop ------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        result = self._fit()
        if self.dist.enabled and self.config.train.distributed == "fsdp":
            # What follows training (costs, saving the model) reads a plain module, not shards.
            self.model = self._whole_model()
        return result

    def _whole_model(self) -> nn.Module:
        """A plain copy of the FSDP-sharded model on every rank, its weights gathered from all."""
        from torch.distributed.checkpoint import state_dict as dcp

        state = dcp.get_model_state_dict(self.model, options=dcp.StateDictOptions(full_state_dict=True))
        model = self.method.wrap(build_model(self.config.model, self.task).to(self.device))
        model.load_state_dict(state)
        return model

    def _fit(self) -> TrainResult:
        cfg = self.config.train
        model, data = self.model, self.train_data
        num, world = len(data), self.dist.world_size
        # The module the training forward pass goes through (model itself with one process).
        replica = wrap(model, self.dist, cfg.distributed)
        steps_per_epoch, total_steps, epochs = self.budget()
        warmup = int(cfg.warmup_frac * total_steps)
        decay, no_decay = _param_groups(model)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
            betas=cfg.betas,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine(s, total_steps, warmup, cfg.min_lr_ratio)
        )
        result = TrainResult(status="finished", metrics=None)
        start_epoch = self._resume(optimizer, scheduler, result)
        if start_epoch >= epochs:
            return result
        result.status = "finished"
        if cfg.loggers and self.dist.is_writer:  # under torchrun, rank 0 alone logs
            self.loggers = open_loggers(
                cfg.loggers,
                run_name=run_name(self.config),
                group=self.log_group,
                root=self.log_dir,
                resume_step=result.steps,
            )
            self.loggers.log_config(to_dict(self.config))

        bar = _progress_bar(total_steps, result.steps, self.progress, self._label())
        # CPU time of this process, resumed where the checkpoint left it; evaluation is not training.
        cpu_started = time.process_time() - result.train_cpu_seconds
        eval_cpu = 0.0

        def over_budget() -> bool:
            limit = cfg.max_cpu_seconds
            return limit is not None and time.process_time() - cpu_started - eval_cpu > limit

        try:
            for epoch in range(start_epoch, epochs):
                # The order of an epoch depends only on (seed, epoch): a resumed run sees the same batches.
                order = torch.randperm(
                    num, generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
                )
                model.train()
                epoch_start = time.perf_counter()
                losses = []
                for i in range(min(steps_per_epoch, total_steps - result.steps)):
                    if agree(self.should_stop(), self.dist):
                        raise Interrupted(f"stopped at step {result.steps} of {total_steps}")
                    indices = shard(order[i * cfg.batch_size : (i + 1) * cfg.batch_size], self.dist)
                    batch = data.batch(indices, self.device)
                    loss = train_step(
                        model,
                        batch,
                        method=self.method,
                        objective=self.objective,
                        optimizer=optimizer,
                        step=result.steps,
                        grad_clip=cfg.grad_clip,
                        bf16=cfg.bf16,
                        replica=replica,
                        ctx=self.dist,
                    )
                    if not torch.isfinite(loss):
                        result.status = "diverged"
                        result.message = (
                            f"loss became {loss.item()} at step {result.steps} (epoch {epoch}); "
                            f"stopped, keeping the last evaluation; try a lower lr than {cfg.lr}"
                        )
                        self.log(result.message)
                        return result
                    used_lr = optimizer.param_groups[0]["lr"]
                    scheduler.step()
                    result.steps += 1
                    if self.loggers:
                        # At the number of updates made, as the evaluations after each epoch.
                        self.loggers.log_metrics(
                            {"train/loss": loss.item(), "train/lr": used_lr}, result.steps
                        )
                    # The global batch: this rank's share times the number of ranks.
                    examples = len(batch["targets"]) * world
                    result.train_examples += examples
                    result.train_tokens += tokens_per_example(model, batch["inputs"]) * examples
                    losses.append(loss.detach())
                    bar.update(1)
                    if agree(over_budget(), self.dist):
                        break
                result.train_seconds += time.perf_counter() - epoch_start
                result.train_cpu_seconds = time.process_time() - cpu_started - eval_cpu
                eval_started = time.process_time()
                metrics = self.evaluate()
                eval_cpu += time.process_time() - eval_started
                result.metrics, result.epochs = metrics, epoch + 1
                record = {
                    "epoch": epoch + 1,
                    "step": result.steps,
                    "loss": float(torch.stack(losses).mean()) if losses else float("nan"),
                    "lr": scheduler.get_last_lr()[0],
                    metrics.name: metrics.value,
                }
                result.history.append(record)
                if self.loggers:
                    self.loggers.log_metrics(_epoch_scalars(record, metrics), result.steps)
                    self.loggers.flush()
                bar.set_postfix({"loss": f"{record['loss']:.3f}", metrics.name: f"{metrics.value:.3f}"})
                self.log(
                    f"epoch {epoch + 1}/{epochs} step {result.steps}/{total_steps} loss {record['loss']:.4f} "
                    f"{metrics.name} {metrics.value:.4f}"
                )
                if metrics.reached(cfg.target_metric):
                    result.status = "early_stopped"
                    result.message = f"{metrics.name} {metrics.value:.4f} reached target {cfg.target_metric}"
                elif agree(over_budget(), self.dist):
                    result.status = "time_limit"
                    result.message = f"stopped by max_cpu_seconds={cfg.max_cpu_seconds} at epoch {epoch + 1}"
                done = result.status != "finished" or epoch + 1 == epochs
                if done:
                    self._finish_transforms(result)
                self._save(optimizer, scheduler, result, epoch + 1, done)
                if self.on_epoch is not None:
                    self.on_epoch(record)
                if result.status != "finished":
                    self.log(result.message)
                    break
        finally:
            bar.close()
        return result

    def close(self, status: str = "finished") -> None:
        """End the run's loggers (after the caller logged the costs); a no-op without loggers."""
        self.loggers.close(status)

    def _finish_transforms(self, result: TrainResult) -> None:
        """Make "before" transforms permanent; apply "after" ones and evaluate the result again."""
        facts = list(self.transform_facts)
        for transform, when in self.transforms:
            if when == "before":
                self.model = transform.finalize(self.model)
        for transform, when in self.transforms:
            if when == "after":
                before = result.metrics.value if result.metrics is not None else None
                self.model, done = transform.apply(self.model, self.transform_context())
                self.model = transform.finalize(self.model)
                result.metrics = self.evaluate()
                facts.append(
                    {"name": type(transform).__name__, "when": when, "metric_before": before, **done}
                )
        result.transforms = facts
        # Methods that train several networks in one (nested widths, early exits) report each.
        result.variants = self.method.evaluate_variants(self.model, self._evaluate_model)

    def _evaluate_model(self, model: nn.Module) -> Metrics:
        """The metric of ``model``; data-parallel, rank 0's, so every rank takes the same decisions.

        DDP: rank 0 evaluates while the others wait. FSDP: every rank takes part in each
        forward pass (its blocks are gathered collectively) and rank 0's result is kept.
        """
        cfg = self.config.train
        metrics = None
        if not self.dist.enabled or self.dist.is_writer or cfg.distributed == "fsdp":
            metrics = evaluate(
                model,
                self.task,
                self.eval_data,
                batch_size=cfg.eval_batch_size,
                device=self.device,
                bf16=cfg.bf16,
                objective=self.config.objective,
            )
        return from_writer(metrics, self.dist)

    # -- checkpoints ---------------------------------------------------------------------------

    def _label(self) -> str:
        mixer = self.config.model.mixer
        name = mixer if isinstance(mixer, str) else (mixer or {}).get("name", "?")
        return f"{name} d={self.config.model.dim} lr={self.config.train.lr:g}"

    def _save(self, optimizer, scheduler, result: TrainResult, epoch: int, done: bool) -> None:
        if self.checkpoint_path is None:
            return
        model_state, optimizer_state = self._states(optimizer)
        if not self.dist.is_writer:
            return
        save_checkpoint(
            self.checkpoint_path,
            {
                "config_key": config_key(self.config),
                "config": to_dict(self.config),
                "epoch": epoch,
                "done": done,
                "model": model_state,
                "optimizer": optimizer_state,
                "scheduler": scheduler.state_dict(),
                "method": self.method.state_dict(),
                "result": {
                    "status": result.status,
                    "metrics": None if result.metrics is None else result.metrics.to_dict(),
                    "history": result.history,
                    "steps": result.steps,
                    "epochs": result.epochs,
                    "train_seconds": result.train_seconds,
                    "train_cpu_seconds": result.train_cpu_seconds,
                    "train_tokens": result.train_tokens,
                    "train_examples": result.train_examples,
                    "message": result.message,
                    "transforms": result.transforms,
                    "variants": result.variants,
                },
                "rng": rng_state(),
            },
        )

    def _states(self, optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
        """The model's and optimiser's states, whole: under FSDP gathered from every rank's shard.

        Gathering is collective (every rank calls it); the checkpoint then looks like a
        one-process one, so a run can resume with another number of processes.
        """
        if self.config.train.distributed != "fsdp" or not self.dist.enabled:
            return self.model.state_dict(), optimizer.state_dict()
        from torch.distributed.checkpoint import state_dict as dcp

        whole = dcp.StateDictOptions(full_state_dict=True, cpu_offload=True)
        return (
            dcp.get_model_state_dict(self.model, options=whole),
            dcp.get_optimizer_state_dict(self.model, optimizer, options=whole),
        )

    def _resume(self, optimizer, scheduler, result: TrainResult) -> int:
        """Load the checkpoint if it belongs to this config; return the epoch to start from."""
        if self.checkpoint_path is None:
            return 0
        payload = load_checkpoint(self.checkpoint_path)
        if payload is None or payload.get("config_key") != config_key(self.config):
            return 0
        if payload["done"]:
            # A finished run saved its weights transformed: "before" transforms made permanent
            # (masks folded in), "after" ones applied; load them into that shape.
            for transform, when in self.transforms:
                if when == "before":
                    self.model = transform.finalize(self.model)
            for transform, when in self.transforms:
                if when == "after":
                    self.model, _ = transform.apply(self.model, self.transform_context())
                    self.model = transform.finalize(self.model)
        if self.config.train.distributed == "fsdp" and self.dist.enabled:
            from torch.distributed.checkpoint import state_dict as dcp

            whole = dcp.StateDictOptions(full_state_dict=True)
            dcp.set_model_state_dict(self.model, payload["model"], options=whole)
            dcp.set_optimizer_state_dict(self.model, optimizer, payload["optimizer"], options=whole)
        else:
            self.model.load_state_dict(payload["model"])
            optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        self.method.load_state_dict(payload.get("method", {}))
        if "rng" in payload:
            set_rng_state(payload["rng"])
        else:  # a checkpoint from before every generator was saved
            torch.set_rng_state(payload["torch_rng"])
        saved = payload["result"]
        result.status = saved["status"] if payload["done"] else "running"
        result.metrics = None if saved["metrics"] is None else Metrics(**saved["metrics"])
        result.history = list(saved["history"])
        result.steps, result.epochs = saved["steps"], saved["epochs"]
        result.train_seconds, result.train_tokens = saved["train_seconds"], saved["train_tokens"]
        result.train_examples = saved.get("train_examples", 0)
        result.train_cpu_seconds = saved["train_cpu_seconds"]
        result.message = saved["message"]
        result.transforms = saved.get("transforms", [])
        result.variants = saved.get("variants", {})
        self.log(f"resumed from {self.checkpoint_path} after epoch {payload['epoch']}")
        return self.budget()[2] if payload["done"] else payload["epoch"]


def _check_data_parallel(config: RunConfig, method: TrainingMethod, ctx: DistContext) -> None:
    """Refuse what data-parallel training does not do: methods that run the model piece by piece.

    DDP averages the gradients of the wrapper's forward pass; a method whose loss or backward
    calls the model's parts itself (early exits, local losses, nested widths) bypasses it.
    """
    plain = type(method).loss is TrainingMethod.loss and type(method).backward is TrainingMethod.backward
    if not plain:
        raise ConfigError(
            "method",
            "name",
            config.method.name,
            f"with {ctx.world_size} processes only methods that call the model whole (their loss and "
            "backward are the standard ones, e.g. 'standard', 'gradient_noise') train data-parallel; "
            "run this one in one process",
        )
    if config.train.distributed == "fsdp" and config.transforms:
        raise ConfigError(
            "train",
            "distributed",
            "fsdp",
            "transforms rewrite the model's modules, which FSDP has sharded; use 'ddp' with transforms",
        )


def _epoch_scalars(record: dict[str, Any], metrics: Metrics) -> dict[str, float]:
    """An epoch's record as logger scalars: mean train loss, the metric and each of its slices."""
    out = {"train/epoch_loss": record["loss"], "train/epoch": record["epoch"]}
    out[f"eval/{metrics.name}"] = metrics.value
    for slice_name, values in metrics.slices.items():
        for value, metric in values.items():
            out[f"eval/{metrics.name}_by_{slice_name}/{value}"] = metric
    return out


def _param_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Weight decay on matrices only: biases, norm gains and 1-d parameters are not decayed."""
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    return decay, no_decay


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, initial: int, enabled: bool, label: str):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=label, dynamic_ncols=True, leave=False)


def train(config: RunConfig, **kwargs: Any) -> tuple[nn.Module, TrainResult]:
    """Build and train; returns the trained model and its result."""
    trainer = Trainer(config, **kwargs)
    try:
        result = trainer.fit()
    except BaseException as err:
        trainer.close("interrupted" if isinstance(err, Interrupted | KeyboardInterrupt) else "failed")
        raise
    trainer.close(result.status)
    return trainer.model, result
