"""Data-parallel training under ``torchrun`` (PyTorch DDP): gloo on CPUs, NCCL on GPUs.

``torchrun --nproc_per_node=2 mixerlab train ...`` starts one process per rank and sets
``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` / ``MASTER_PORT``; :func:`from_environment` joins
the process group they describe (a plain process is rank 0 of 1, and nothing changes).

Every rank builds the same model from the run's seed and draws the same epoch order from the
task seed; each takes its contiguous share of every global batch (:func:`shard`). DDP averages
the ranks' gradients, so with equal shares and a loss that is a mean over examples, a step
is the single-process step on the whole global batch (to float rounding of the all-reduce), and
the loss curve is the same. :func:`check_shardable` refuses a batch size that would give unequal
shares. Only rank 0 writes checkpoints and results (:attr:`DistContext.is_writer`).

Shapes: a global batch is ``indices [B]``; a rank's share is ``[B / world_size]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from mixerlab.errors import check


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its ``rank`` among ``world_size`` processes."""

    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_writer(self) -> bool:
        """Whether this process writes checkpoints and results (rank 0 only, so each is written once)."""
        return self.rank == 0


def from_environment(backend: str | None = None) -> DistContext:
    """The context ``torchrun`` describes in the environment, joining its process group once.

    ``backend`` defaults to NCCL when CUDA is available, else gloo. Without ``WORLD_SIZE`` (or
    with 1) this is a single process: rank 0 of 1, no process group.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size())


def check_shardable(num_examples: int, batch_size: int, ctx: DistContext) -> None:
    """Every global batch of an epoch (the last, shorter one included) splits into equal shares."""
    last = num_examples % batch_size
    check(
        batch_size % ctx.world_size == 0 and last % ctx.world_size == 0,
        "distributed",
        "train.batch_size",
        batch_size,
        f"with {ctx.world_size} processes, the batch size and the last batch of an epoch "
        f"({num_examples} examples: {last or batch_size}) must divide by {ctx.world_size}, so that "
        "every rank's share is equal and the averaged gradient is the whole batch's",
    )


def shard(indices: Tensor, ctx: DistContext) -> Tensor:
    """This rank's contiguous share of a global batch ``indices [B] -> [B / world_size]``."""
    size = len(indices) // ctx.world_size
    return indices[ctx.rank * size : (ctx.rank + 1) * size]


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module:
    """``model`` in DistributedDataParallel when there are several ranks (unchanged otherwise)."""
    if not ctx.enabled:
        return model
    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def mean_over_ranks(value: Tensor, ctx: DistContext) -> Tensor:
    """The mean of a scalar over the ranks (the global batch's loss, for the log)."""
    if not ctx.enabled:
        return value.detach()
    total = value.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / ctx.world_size
