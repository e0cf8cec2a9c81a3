"""Training steps per second through mixerlab's trainer step against a plain PyTorch loop, in one run.

For every mixer and width of the default comparison (:data:`mixerlab.bench.defaults.DEFAULT_SWEEP`:
MQAR vocabulary 32, length 32, batch 64, model ``lm`` depth 2, swiglu, rmsnorm), the same model
weights are trained on the same batches in two ways, interleaved repeat by repeat:

- *trainer*: :func:`mixerlab.train.trainer.train_step` with the ``standard`` method and the
  task's ``cross_entropy`` objective (the hooks, the aux-loss collection, the finiteness check);
- *plain*: ``logits, _ = model(x)``; ``F.cross_entropy``; ``zero_grad``; ``backward``;
  ``clip_grad_norm_``; ``step``;
- *compiled* (``--compile``): the plain loop on ``torch.compile(model)``; the compile (the first
  step, forward and backward) is timed on its own, apart from the steady-state steps;
- *trainer compiled* (``--compile``): the trainer's step with ``train.compile: true``
  (:class:`mixerlab.train.compiled.CompiledTraining`: the same ``train_step`` through the
  compiled module, with its eager fallback), its compile timed the same way.

Both use AdamW (lr 3e-3, weight decay 0.1, one parameter group, no schedule) and grad clip 1.0,
one torch thread (as ``mixerlab compare``'s workers), and warm-up steps before timing. Each
figure is the median, with min-max, of ``--repeats`` timings of ``--steps`` steps.

    python benchmarks/train_overhead.py --steps 30 --repeats 3 --compile
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mixerlab.bench.defaults import DEFAULT_SWEEP
from mixerlab.layers.spec import split_spec
from mixerlab.registry import OBJECTIVES
from mixerlab.tasks.base import IGNORE, create_task
from mixerlab.train.compiled import CompiledTraining
from mixerlab.train.config import ModelConfig
from mixerlab.train.methods import create_method
from mixerlab.train.trainer import build_model, train_step

LR, WEIGHT_DECAY, GRAD_CLIP = 3e-3, 0.1, 1.0


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)


def trainer_stepper(
    model: nn.Module, objective, *, compile: bool = False, batch_size: int = 0
) -> Callable[[dict[str, Any], int], None]:
    method = create_method("standard")
    model = method.wrap(model)
    optimizer = make_optimizer(model)
    compiled = CompiledTraining(model, enabled=compile, batch_size=batch_size)

    def run(batch: dict[str, Any], step: int) -> None:
        compiled.step(
            lambda forward: train_step(
                model,
                batch,
                method=method,
                objective=objective,
                optimizer=optimizer,
                step=step,
                grad_clip=GRAD_CLIP,
                bf16=False,
                forward=forward,
            ),
            batch,
        )
        if compile and not compiled.active:
            raise RuntimeError(f"train.compile fell back to eager: {compiled.failure}")

    return run


def plain_stepper(
    model: nn.Module, forward: nn.Module | None = None
) -> Callable[[dict[str, Any], int], None]:
    forward = forward if forward is not None else model
    optimizer = make_optimizer(model)
    params = list(model.parameters())

    def run(batch: dict[str, Any], step: int) -> None:
        logits, _ = forward(batch["inputs"])
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), batch["targets"].reshape(-1), ignore_index=IGNORE
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        optimizer.step()

    return run


class Cell:
    """One way of training one model: its stepper and the position in the shared batch list."""

    def __init__(self, run: Callable[[dict[str, Any], int], None], batches: list[dict[str, Any]]) -> None:
        self.run, self.batches, self.step = run, batches, 0

    def steps(self, n: int) -> float:
        """Run ``n`` steps; the seconds they took."""
        start = time.perf_counter()
        for _ in range(n):
            self.run(self.batches[self.step % len(self.batches)], self.step)
            self.step += 1
        return time.perf_counter() - start


def summary(rates: list[float]) -> str:
    return f"{statistics.median(rates):7.1f} ({min(rates):.1f}-{max(rates):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before the first repeat")
    parser.add_argument("--widths", default=",".join(str(w) for w in DEFAULT_SWEEP["widths"]))
    parser.add_argument("--mixers", default="", help="comma-separated names (default: the sweep's)")
    parser.add_argument("--compile", action="store_true", help="also time the plain loop on torch.compile")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    sweep = DEFAULT_SWEEP
    task = create_task(sweep["task"]["name"], **sweep["task"]["options"])
    objective = OBJECTIVES.create(task.objective)
    data = task.train_data(sweep["task"]["seed"])
    batch_size = sweep["train"]["batch_size"]
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    batches = [
        data.batch(order[i : i + batch_size]) for i in range(0, len(data) - batch_size + 1, batch_size)
    ]
    specs = sweep["models"]
    if args.mixers:
        wanted = args.mixers.split(",")
        specs = [s for s in specs if split_spec(s, "token mixer")[0] in wanted]
    widths = [int(w) for w in args.widths.split(",")]
    base = {k: v for k, v in sweep["model"].items()}

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {task.objective} objective; "
        f"batch {batch_size}, seq_len {data.seq_len}; {args.warmup} warm-up steps, "
        f"{args.steps} timed steps x {args.repeats} repeats; steps/s median (min-max)"
    )
    header = f"{'mixer':<16}{'width':>6}{'trainer':>20}{'plain':>20}{'ratio':>7}"
    if args.compile:
        header += f"{'compiled':>20}{'ratio':>7}{'compile s':>10}"
        header += f"{'trainer compiled':>20}{'ratio':>7}{'compile s':>10}"
    print(header)
    for spec in specs:
        name = split_spec(spec, "token mixer")[0]
        for width in widths:
            torch.manual_seed(0)
            model = build_model(ModelConfig(dim=width, mixer=spec, **base), task)
            cells = {
                "trainer": Cell(trainer_stepper(copy.deepcopy(model), objective), batches),
                "plain": Cell(plain_stepper(copy.deepcopy(model)), batches),
            }
            notes, compile_s = [], {"compiled": float("nan"), "trainer compiled": float("nan")}
            if args.compile:
                compiled_model = copy.deepcopy(model)
                # The trainer's cell first: it resets Dynamo (a fresh cache per model, or the
                # 8-versions limit of the shared forward would end compiling after 4 rows); its
                # compile is cold, the plain loop's then reuses Inductor's on-disk cache (warm).
                makers = {
                    "trainer compiled": lambda m=model: trainer_stepper(
                        copy.deepcopy(m), objective, compile=True, batch_size=batch_size
                    ),
                    "compiled": lambda m=compiled_model: plain_stepper(m, torch.compile(m)),
                }
                for key, make in makers.items():
                    try:
                        cell = Cell(make(), batches)
                        compile_s[key] = cell.steps(1)  # the first step compiles forward and backward
                        cell.steps(args.warmup)  # a recompile would fail here, not in the timing
                        cells[key] = cell
                    except Exception as error:  # any failure of the compiler is reported
                        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
                        notes.append(f"{key} failed: {type(error).__name__}: {reason}")
            for key in ("trainer", "plain"):
                cells[key].steps(args.warmup)
            rates: dict[str, list[float]] = {key: [] for key in cells}
            for _ in range(args.repeats):
                for key, cell in cells.items():
                    rates[key].append(args.steps / cell.steps(args.steps))
            trainer, plain = (statistics.median(rates[k]) for k in ("trainer", "plain"))
            line = (
                f"{name:<16}{width:>6}{summary(rates['trainer']):>20}{summary(rates['plain']):>20}"
                f"{trainer / plain:>7.2f}"
            )
            if args.compile:
                for key in ("compiled", "trainer compiled"):
                    if key in rates:
                        rate = statistics.median(rates[key])
                        line += f"{summary(rates[key]):>20}{rate / plain:>7.2f}{compile_s[key]:>10.1f}"
                    else:
                        line += f"{'-':>20}{'-':>7}{'-':>10}"
            print(line, flush=True)
            for note in notes:
                print(f"  {name} width {width}: {note}", flush=True)


if __name__ == "__main__":
    main()
