"""What a claim is: a paper's claim as a toy-scale experiment with a pass/fail threshold fixed in code.

A :class:`Claim` names its paper (title and arXiv id), states the claim in one sentence, fixes
its :class:`Threshold` conditions before anything is run, and measures figures with a function
``measure(settings, seed, scale) -> Measurement``. :func:`verdict` compares the measured figures
(averaged over seeds) with the thresholds: a claim passes when every condition holds, and a
figure that is missing or not finite fails it. Thresholds are never tuned after a run; when one
had to change, the claim's ``note`` says so and why.

``scale`` multiplies every step budget and data size (1.0 is the real experiment; the tests use
a tiny one to run a claim end to end in seconds). Experiments are functions of their settings
and seed: fixed step budgets, seeded data and initialisation, one torch thread.

Shapes of the training helpers: token batches ``inputs, targets: [B, T]`` (``-100`` = unscored).
"""

from __future__ import annotations

import json
import math
import operator
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mixerlab.errors import ConfigError
from mixerlab.tasks.base import IGNORE, TaskData

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Threshold:
    """One pass condition ``figure op value`` on a measured figure, e.g. ``accuracy >= 0.9``.

    ``in_plot`` draws the value as a dashed line on the claim's plot (when the figure is in the
    plot's y units).
    """

    figure: str
    op: str
    value: float
    in_plot: bool = False

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ConfigError("claim threshold", "op", self.op, f"expected one of {sorted(_OPS)}")

    def holds(self, measured: float | None) -> bool:
        if measured is None or not math.isfinite(measured):
            return False
        return _OPS[self.op](measured, self.value)

    @property
    def higher_is_better(self) -> bool:
        return self.op in (">=", ">")

    def __str__(self) -> str:
        return f"{self.figure} {self.op} {self.value:g}"


@dataclass
class Measurement:
    """What one seed of a claim measured.

    ``figures`` are the numbers the thresholds read (plus any other headline numbers);
    ``series`` are the curves of the plot, ``{label: {x: y}}``; ``extra`` anything else worth
    keeping in the store (state sizes, parameter counts, ...).
    """

    figures: dict[str, float]
    series: dict[str, dict[Any, float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    steps: int = 0


@dataclass
class Plot:
    """How a claim's series are drawn: axis labels, log scales, categorical x."""

    x_label: str
    y_label: str
    log_x: bool = False
    log_y: bool = False
    categorical_x: bool = False


MeasureFn = Callable[[dict[str, Any], int, float], Measurement]


@dataclass(frozen=True)
class Claim:
    """A paper's claim at toy scale: its settings, its fixed thresholds and how it is measured."""

    name: str
    paper: str
    arxiv: str
    text: str
    thresholds: tuple[Threshold, ...]
    settings: dict[str, Any]
    measure: MeasureFn
    plot: Plot
    # Part of `mixerlab claims --quick` (the CI subset): only claims that run in well under a minute.
    quick: bool = False
    # Set only when a threshold was changed after a run, saying what and why.
    note: str = ""
    kind: str = "next_token"

    @property
    def threshold_text(self) -> str:
        return " and ".join(str(t) for t in self.thresholds)


@dataclass
class ClaimResult:
    """A claim's verdict: figures averaged over seeds, each condition's outcome, the per-seed data."""

    claim: Claim
    seeds: list[int]
    scale: float
    figures: dict[str, float]
    checks: list[tuple[Threshold, float | None, bool]]
    measurements: list[Measurement]
    seconds: float = 0.0
    # Set when the experiment raised: the claim then fails with this as its message.
    error: str = ""

    @property
    def passed(self) -> bool:
        return all(ok for _, _, ok in self.checks)

    @property
    def status(self) -> str:
        return "passed" if self.passed else "failed"

    @property
    def measured_text(self) -> str:
        # A figure bounded on both sides (a ratio in [0.8, 1.25]) is shown once.
        shown = {t.figure: v for t, v, _ in self.checks}
        return ", ".join(f"{name}={_fmt(v)}" for name, v in shown.items())

    @property
    def message(self) -> str:
        """The one-sentence result."""
        failed = [str(t) for t, _, ok in self.checks if not ok]
        how = "holds" if self.passed else f"does not hold ({'; '.join(failed)} not met)"
        seeds = f"{len(self.seeds)} seed{'s' if len(self.seeds) > 1 else ''}"
        return f"{self.claim.name} {how} at toy scale: {self.measured_text} (mean of {seeds})."


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "nan"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.4g}"


def mean_series(measurements: list[Measurement]) -> dict[str, dict[Any, float]]:
    """Every series averaged over seeds, point by point."""
    out: dict[str, dict[Any, list[float]]] = {}
    for m in measurements:
        for label, points in m.series.items():
            for x, y in points.items():
                out.setdefault(label, {}).setdefault(x, []).append(y)
    return {label: {x: statistics.fmean(ys) for x, ys in pts.items()} for label, pts in out.items()}


def verdict(
    claim: Claim, measurements: list[Measurement], seeds: list[int], scale: float = 1.0
) -> ClaimResult:
    """Average each figure over seeds and test every threshold on the average."""
    names = {n for m in measurements for n in m.figures}
    figures: dict[str, float] = {}
    for name in sorted(names):
        values = [m.figures[name] for m in measurements if name in m.figures]
        figures[name] = statistics.fmean(values) if values else float("nan")
    checks = [(t, figures.get(t.figure), t.holds(figures.get(t.figure))) for t in claim.thresholds]
    return ClaimResult(claim, list(seeds), scale, figures, checks, measurements)


CLAIMS: dict[str, Claim] = {}


def register_claim(claim: Claim) -> Claim:
    """Add a claim to :data:`CLAIMS` (its name must be new)."""
    if claim.name in CLAIMS:
        raise ValueError(f"claim {claim.name!r} is already registered")
    CLAIMS[claim.name] = claim
    return claim


def scaled(value: int, scale: float, minimum: int = 2) -> int:
    """A step budget or data size times ``scale``, at least ``minimum``."""
    return max(minimum, round(value * scale))


@contextmanager
def one_thread() -> Iterator[None]:
    """Toy models gain nothing from threads, and one thread keeps runs reproducible on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def warmup_cosine_lambda(steps: int, warmup_frac: float = 0.1) -> Callable[[int], float]:
    warmup = max(1, round(warmup_frac * steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def train_steps(
    model: nn.Module,
    loss_fn: Callable[[int], torch.Tensor],
    *,
    steps: int,
    lr: float,
    weight_decay: float = 0.0,
    grad_clip: float | None = 1.0,
) -> list[float]:
    """``steps`` AdamW steps with warm-up and cosine decay; ``loss_fn(step)`` gives each step's loss.

    Returns the loss of every step. A non-finite loss stops training (the losses so far are kept).
    """
    from mixerlab.layers.aux_loss import collect_aux_losses

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine_lambda(steps))
    losses: list[float] = []
    model.train()
    for step in range(steps):
        # Layers with extra losses (MoE load balancing) report them here; see layers/aux_loss.py.
        with collect_aux_losses() as aux:
            loss = loss_fn(step)
        total = loss + aux.total()
        if not torch.isfinite(total):
            losses.append(float("nan"))
            break
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


@dataclass
class TrainedLM:
    """A language model trained on a token task, with its training losses and sizes."""

    model: nn.Module
    losses: list[float]
    params: int
    state_size: int


_TRAINED: dict[str, TrainedLM] = {}


def train_lm(
    task_name: str,
    task_options: dict[str, Any],
    model_options: dict[str, Any],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    weight_decay: float = 0.0,
    num_train: int | None = None,
) -> TrainedLM:
    """Train ``create_model("lm", **model_options)`` on a token task for exactly ``steps`` steps.

    Each step sees ``batch_size`` fresh examples of ``task.train_data(seed)`` (the task makes
    ``steps * batch_size`` of them), so no example is seen twice; with ``num_train`` the task
    makes that many and the steps go over them in epochs, each in a new seeded order. Results
    are kept for the process: claims that train the same model on the same data (attention on
    MQAR) train it once.
    """
    import mixerlab

    key = json.dumps(
        [task_name, task_options, model_options, steps, batch_size, lr, seed, weight_decay, num_train],
        sort_keys=True,
        default=str,
    )
    if key in _TRAINED:
        return _TRAINED[key]
    size = num_train or steps * batch_size
    task = mixerlab.create_task(task_name, num_train=size, **task_options)
    data = task.train_data(seed)
    torch.manual_seed(seed)
    model = mixerlab.create_model("lm", vocab_size=task.vocab_size, **model_options)
    per_epoch = max(1, size // batch_size)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))

    def loss_fn(step: int) -> torch.Tensor:
        nonlocal order
        if num_train is not None and step > 0 and step % per_epoch == 0:
            order = torch.randperm(size, generator=torch.Generator().manual_seed(seed + step))
        if num_train is None:
            batch = data.batch(slice(step * batch_size, (step + 1) * batch_size))
        else:
            start = (step % per_epoch) * batch_size
            batch = data.batch(order[start : start + batch_size])
        logits, _ = model(batch["inputs"])
        return F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=IGNORE)

    with one_thread():
        losses = train_steps(model, loss_fn, steps=steps, lr=lr, weight_decay=weight_decay)
    params = sum(p.numel() for p in model.parameters())
    result = TrainedLM(model, losses, params, int(model.state_size(task.train_seq_len)))
    _TRAINED[key] = result
    return result


def clear_cache() -> None:
    """Forget the models trained so far in this process."""
    _TRAINED.clear()


@torch.no_grad()
def token_accuracy(
    model: nn.Module, data: TaskData, *, by: str | None = None, batch_size: int = 256
) -> tuple[float, dict[int, float]]:
    """Accuracy over scored positions (targets != -100), overall and per value of slice ``by``."""
    model.eval()
    correct = torch.zeros(len(data))
    scored = torch.zeros(len(data))
    with one_thread():
        for start in range(0, len(data), batch_size):
            inputs = data.inputs[start : start + batch_size]
            targets = data.targets[start : start + batch_size]
            pred = model(inputs)[0].argmax(-1)
            mask = targets != IGNORE
            correct[start : start + len(targets)] = ((pred == targets) & mask).sum(1).float()
            scored[start : start + len(targets)] = mask.sum(1).float()
    overall = float(correct.sum() / scored.sum().clamp_min(1))
    per: dict[int, float] = {}
    if by is not None:
        labels = data.slices[by]
        for value in labels.unique().tolist():
            sel = labels == value
            per[int(value)] = float(correct[sel].sum() / scored[sel].sum().clamp_min(1))
    return overall, per


@torch.no_grad()
def token_loss(model: nn.Module, data: TaskData, batch_size: int = 256) -> float:
    """Mean cross-entropy over scored positions."""
    model.eval()
    total, count = 0.0, 0
    with one_thread():
        for start in range(0, len(data), batch_size):
            logits = model(data.inputs[start : start + batch_size])[0]
            targets = data.targets[start : start + batch_size]
            loss = F.cross_entropy(
                logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum"
            )
            total += float(loss)
            count += int((targets != IGNORE).sum())
    return total / max(1, count)
