"""``train.compile``: the training forward and backward through ``torch.compile``, with an eager fallback.

Small models (width 32-128, length 32-256) spend most of a CPU step in Python dispatch and many
small kernels; ``torch.compile`` (TorchDynamo + Inductor) fuses them. What this module fixes:

- Only the *training* forward runs compiled. Evaluation (``model.eval()``, ``no_grad``) uses the
  eager module, so switching between training and evaluation never recompiles.
- The graph is compiled for the run's batch size (``dynamic=False``); the short last batch of an
  epoch runs eagerly instead of triggering a second, dynamic-shape compile.
- A compile that fails (a graph the compiler cannot handle, a backend error) is not an error of
  the run: one warning names the cause, the step is redone eagerly (gradients are zeroed before
  every backward, and the optimiser has not stepped) and the run goes on eagerly.
- Every run starts from a reset of Dynamo's in-memory caches: all models share ``forward``'s
  code object, and Dynamo gives up compiling a code object (silently, eager from then on) after
  ``recompile_limit`` (8) compiled versions, which a process training 12 runs of a sweep would
  reach (measured: every model after the eighth ran eagerly). Inductor's on-disk cache is kept.
- ``"auto"`` compiles when the run's budget is at least :data:`AUTO_MIN_STEPS` optimiser steps:
  below that, the compile costs more than the steps it saves (measured on the default sweep's
  models; see BENCHMARKS.md "Trainer overhead").

Inductor caches compiled graphs on disk (``TORCHINDUCTOR_CACHE_DIR``, by default under the
system's temporary folder), so the runs of a sweep that share a model's shapes pay the code
generation once; Dynamo's tracing is paid by every run.

Compiled and eager steps give the same losses to float tolerance (fused kernels reorder sums),
not bit for bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

# The step budget from which "auto" compiles. At the default sweep's sizes (MQAR, length 32,
# batch 64, depth 2, widths 32/64; BENCHMARKS.md "Trainer overhead", a quiet 2-core machine) the
# first compiled step costs 4-25 s cold and the steady state gains 1.14-1.53x: the compile is
# paid back after 1,600-2,300 steps for most of the six default mixers (attention 1,600 at width
# 64, gla 2,000, hyena up to 5,100), after fewer than 1,000 only for deltanet and minGRU at
# width 64. Hence off at the default 1,000 steps, on from 3,000. On a loaded machine a compile
# takes several times longer (60-180 s measured with 8 jobs on 2 cores), which moves these
# break-evens up, never down; Inductor's on-disk cache cut a repeated compile by 30-40% there.
AUTO_MIN_STEPS = 3000

CompileSetting = bool | str


def wants_compile(setting: CompileSetting, total_steps: int) -> bool:
    """Whether a run of ``total_steps`` steps compiles under ``train.compile = setting``."""
    if setting == "auto":
        return total_steps >= AUTO_MIN_STEPS
    return bool(setting)


def _compile_errors() -> tuple[type[BaseException], ...]:
    """The exceptions by which torch.compile says it could not compile (not errors of the model)."""
    errors: list[type[BaseException]] = []
    try:
        from torch._dynamo.exc import TorchDynamoException

        errors.append(TorchDynamoException)
    except ImportError:  # pragma: no cover - every torch with torch.compile has it
        pass
    try:
        from torch._inductor.exc import InductorError

        errors.append(InductorError)
    except ImportError:  # pragma: no cover - older torch wraps Inductor's errors in Dynamo's
        pass
    return tuple(errors)


class CompiledTraining:
    """The module a training step runs its forward through: compiled for full batches, else eager.

    ``step(run, batch)`` calls ``run(forward)`` with the compiled module (full batches) or
    ``None`` (eager); on a compile error it warns once, calls ``run(None)`` and stays eager.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        enabled: bool,
        batch_size: int,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.log = log or (lambda msg: None)
        self.forward: nn.Module | None = None
        if enabled:
            torch._dynamo.reset()
            self.forward = torch.compile(model, dynamic=False)
        self.failure: str | None = None

    @property
    def active(self) -> bool:
        return self.forward is not None

    def step(self, run: Callable[[nn.Module | None], Any], batch: dict[str, Any]) -> Any:
        if self.forward is None or len(batch["targets"]) != self.batch_size:
            return run(None)
        try:
            return run(self.forward)
        except _compile_errors() as error:
            first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
            self.failure = f"{type(error).__name__}: {first}"
            message = f"train.compile: torch.compile failed ({self.failure}); training eagerly"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            self.log(message)
            self.forward = None
            return run(None)
