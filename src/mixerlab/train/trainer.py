"""The trainer: one model on one task, seeded, resumable, guarded against divergence.

AdamW with linear warm-up and cosine decay, gradient clipping, optional bf16 autocast, an
evaluation after every epoch, early stop at a target metric, a checkpoint after every epoch (a
killed run resumes from its last one and ends exactly where an uninterrupted run ends), and a
guard that stops a run whose loss becomes NaN/inf with a message. Auxiliary losses reported by
layers (see :mod:`mixerlab.layers.aux_loss`) are added to the task loss.

Shapes: ``inputs, targets: [B, T]``; ``logits: [B, T, V]``.
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
import torch.nn.functional as F
from torch import nn

from mixerlab.layers.aux_loss import collect_aux_losses
from mixerlab.registry import MODELS
from mixerlab.tasks.base import IGNORE, Metrics, Task, create_task, evaluate
from mixerlab.train.checkpoint import load_checkpoint, save_checkpoint
from mixerlab.train.config import ModelConfig, RunConfig, config_key, to_dict
from mixerlab.train.schedules import warmup_cosine


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
    message: str = ""

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / self.train_seconds if self.train_seconds > 0 else float("nan")


def build_model(config: ModelConfig, vocab_size: int) -> nn.Module:
    """The model of ``config`` for a task with ``vocab_size`` tokens."""
    return MODELS.create(
        config.name,
        vocab_size=vocab_size,
        dim=config.dim,
        depth=config.depth,
        mixer=config.mixer,
        channel_mixer=config.channel_mixer,
        norm=config.norm,
        **config.options,
    )


def build_task(config: RunConfig) -> Task:
    return create_task(config.task.name, **config.task.options)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


Callback = Callable[[dict[str, Any]], None]


class Trainer:
    """Train ``config.model`` on ``config.task`` with ``config.train``.

    ``checkpoint_path`` (optional) is written after every epoch and read at start: a run whose
    config matches the checkpoint's continues from it. ``progress`` shows a tqdm bar.
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        checkpoint_path: str | os.PathLike | None = None,
        progress: bool = True,
        on_epoch: Callback | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.checkpoint_path = checkpoint_path
        self.progress = progress
        self.on_epoch = on_epoch
        self.log = log or (lambda msg: None)
        self.task = build_task(config)
        self.device = torch.device(config.train.device)
        seed_everything(config.train.seed)
        self.model = build_model(config.model, self.task.vocab_size).to(self.device)
        self.train_data = self.task.train_data(config.task.seed)
        self.eval_data = self.task.eval_data(config.task.seed)

    # -- the loop ------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        cfg = self.config.train
        model, data = self.model, self.train_data
        num = len(data)
        steps_per_epoch = math.ceil(num / cfg.batch_size)
        total_steps = steps_per_epoch * cfg.epochs
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
        if start_epoch >= cfg.epochs:
            return result
        result.status = "finished"

        bar = _progress_bar(total_steps, start_epoch * steps_per_epoch, self.progress, self._label())
        # CPU time of this process, resumed where the checkpoint left it; evaluation is not training.
        cpu_started = time.process_time() - result.train_cpu_seconds
        eval_cpu = 0.0
        device_type = self.device.type

        def over_budget() -> bool:
            limit = cfg.max_cpu_seconds
            return limit is not None and time.process_time() - cpu_started - eval_cpu > limit

        try:
            for epoch in range(start_epoch, cfg.epochs):
                # The order of an epoch depends only on (seed, epoch): a resumed run sees the same batches.
                order = torch.randperm(
                    num, generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
                )
                model.train()
                epoch_start = time.perf_counter()
                losses = []
                for i in range(steps_per_epoch):
                    idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                    inputs = data.inputs[idx].to(self.device)
                    targets = data.targets[idx].to(self.device)
                    with collect_aux_losses() as aux:
                        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=cfg.bf16):
                            logits, _ = model(inputs)
                        loss = F.cross_entropy(
                            logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE
                        )
                        loss = loss + aux.total().to(loss.device)
                    if not torch.isfinite(loss):
                        result.status = "diverged"
                        result.message = (
                            f"loss became {loss.item()} at step {result.steps} (epoch {epoch}); "
                            f"stopped, keeping the last evaluation; try a lower lr than {cfg.lr}"
                        )
                        self.log(result.message)
                        return result
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    optimizer.step()
                    scheduler.step()
                    result.steps += 1
                    result.train_tokens += inputs.numel()
                    losses.append(loss.detach())
                    bar.update(1)
                    if over_budget():
                        break
                result.train_seconds += time.perf_counter() - epoch_start
                result.train_cpu_seconds = time.process_time() - cpu_started - eval_cpu
                eval_started = time.process_time()
                metrics = evaluate(
                    model,
                    self.task,
                    self.eval_data,
                    batch_size=cfg.eval_batch_size,
                    device=self.device,
                    bf16=cfg.bf16,
                )
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
                bar.set_postfix({"loss": f"{record['loss']:.3f}", metrics.name: f"{metrics.value:.3f}"})
                self.log(
                    f"epoch {epoch + 1}/{cfg.epochs} step {result.steps} loss {record['loss']:.4f} "
                    f"{metrics.name} {metrics.value:.4f}"
                )
                if metrics.reached(cfg.target_metric):
                    result.status = "early_stopped"
                    result.message = f"{metrics.name} {metrics.value:.4f} reached target {cfg.target_metric}"
                elif over_budget():
                    result.status = "time_limit"
                    result.message = f"stopped by max_cpu_seconds={cfg.max_cpu_seconds} at epoch {epoch + 1}"
                done = result.status != "finished" or epoch + 1 == cfg.epochs
                self._save(optimizer, scheduler, result, epoch + 1, done)
                if self.on_epoch is not None:
                    self.on_epoch(record)
                if result.status != "finished":
                    self.log(result.message)
                    break
        finally:
            bar.close()
        return result

    # -- checkpoints ---------------------------------------------------------------------------

    def _label(self) -> str:
        mixer = self.config.model.mixer
        name = mixer if isinstance(mixer, str) else mixer.get("name", "?")
        return f"{name} d={self.config.model.dim} lr={self.config.train.lr:g}"

    def _save(self, optimizer, scheduler, result: TrainResult, epoch: int, done: bool) -> None:
        if self.checkpoint_path is None:
            return
        save_checkpoint(
            self.checkpoint_path,
            {
                "config_key": config_key(self.config),
                "config": to_dict(self.config),
                "epoch": epoch,
                "done": done,
                "model": self.model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "result": {
                    "status": result.status,
                    "metrics": None if result.metrics is None else result.metrics.to_dict(),
                    "history": result.history,
                    "steps": result.steps,
                    "epochs": result.epochs,
                    "train_seconds": result.train_seconds,
                    "train_cpu_seconds": result.train_cpu_seconds,
                    "train_tokens": result.train_tokens,
                    "message": result.message,
                },
                "torch_rng": torch.get_rng_state(),
            },
        )

    def _resume(self, optimizer, scheduler, result: TrainResult) -> int:
        """Load the checkpoint if it belongs to this config; return the epoch to start from."""
        if self.checkpoint_path is None:
            return 0
        payload = load_checkpoint(self.checkpoint_path)
        if payload is None or payload.get("config_key") != config_key(self.config):
            return 0
        self.model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        torch.set_rng_state(payload["torch_rng"])
        saved = payload["result"]
        result.status = saved["status"] if payload["done"] else "running"
        result.metrics = None if saved["metrics"] is None else Metrics(**saved["metrics"])
        result.history = list(saved["history"])
        result.steps, result.epochs = saved["steps"], saved["epochs"]
        result.train_seconds, result.train_tokens = saved["train_seconds"], saved["train_tokens"]
        result.train_cpu_seconds = saved["train_cpu_seconds"]
        result.message = saved["message"]
        self.log(f"resumed from {self.checkpoint_path} after epoch {payload['epoch']}")
        return self.config.train.epochs if payload["done"] else payload["epoch"]


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
    return trainer.model, trainer.fit()
