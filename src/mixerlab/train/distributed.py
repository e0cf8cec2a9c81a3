"""Data-parallel training under ``torchrun`` (PyTorch DDP): gloo on CPUs, NCCL on GPUs.

``torchrun --nproc_per_node=2 mixerlab train ...`` starts one process per rank and sets
``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` / ``MASTER_PORT``; :func:`from_environment` joins
the process group they describe (a plain process is rank 0 of 1, and nothing changes).

Every rank builds the same model from the run's seed and draws the same epoch order from it;
each takes its contiguous share of every global batch (:func:`shard`). DDP averages the ranks'
gradients; each rank's loss, a mean over its scored targets, is first weighted by its share of
the global batch's scored targets (:func:`weigh_share`: shares of MQAR examples with 2 and 4
queries hold different numbers), so a step is the single-process step on the whole global
batch (to float rounding of the all-reduce), and the loss curve is the same.
:func:`check_shardable` refuses a batch size that would give unequal shares. Only rank 0 writes
checkpoints and results (:attr:`DistContext.is_writer`).

The ranks take every decision together: the loss that is checked for NaN/inf is the global
batch's (:func:`weigh_share`, before the backward pass, so no rank is left waiting in one), a
stop request or the CPU-time cap on any rank stops all (:func:`agree`), and the metric that
decides early stopping is rank 0's, sent to the others (:func:`from_writer`).

``train.distributed: fsdp`` shards parameters, gradients and optimiser state over the ranks
(PyTorch FSDP2, ``fully_shard``) with every :class:`~mixerlab.layers.block.Block` as one unit,
for models too large for one device; the step is the same as DDP's. Checkpoints hold the
whole weights and optimiser state (gathered from the shards, keyed by parameter name), so an
FSDP run resumes with any number (two or more) of processes; after training the model is
gathered into a plain module for what follows (costs, saving). Transforms are refused with it.

Shapes: a global batch is ``indices [B]``; a rank's share is ``[B / world_size]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from mixerlab.errors import check
from mixerlab.train.objectives import IGNORE


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its ``rank`` among ``world_size`` processes."""

    rank: int = 0
    world_size: int = 1
    # The process's index on its machine (torchrun's LOCAL_RANK): its GPU under NCCL.
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_writer(self) -> bool:
        """Whether this process writes checkpoints and results (rank 0 only, so each is written once)."""
        return self.rank == 0


def backend_for(device: str | torch.device) -> str:
    """The collective backend for a training device: NCCL for CUDA, gloo for the CPU."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def from_environment(backend: str | None = None) -> DistContext:
    """The context ``torchrun`` describes in the environment, joining its process group once.

    ``backend`` defaults to NCCL when CUDA is available, else gloo. Without ``WORLD_SIZE`` (or
    with 1) this is a single process: rank 0 of 1, no process group. Under NCCL the process
    takes the GPU of its ``LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistContext()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend)
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local)


def is_writer_process() -> bool:
    """Whether this process is rank 0 of its ``torchrun`` job (or a plain process): it prints and writes."""
    return int(os.environ.get("RANK", "0")) == 0


def leave() -> None:
    """Leave the process group joined by :func:`from_environment` (nothing for a plain process)."""
    if dist.is_initialized():
        dist.destroy_process_group()


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


def wrap(model: nn.Module, ctx: DistContext, strategy: str = "ddp") -> nn.Module:
    """The module the training forward pass goes through, averaging gradients over the ranks.

    ``ddp``: ``model`` in DistributedDataParallel (a replica per rank; ``model`` itself stays
    usable for evaluation and checkpoints). ``fsdp``: ``model`` sharded in place, every
    :class:`~mixerlab.layers.block.Block` one unit (its parameters gathered for its forward and
    backward only), then the rest; ``model`` is returned, and every call of it is collective.
    Unchanged when there is one rank.
    """
    if not ctx.enabled:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        from mixerlab.layers.block import Block

        for module in list(model.modules()):
            if isinstance(module, Block):
                fully_shard(module)
        fully_shard(model)
        return model
    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def mean_over_ranks(value: Tensor, ctx: DistContext) -> Tensor:
    """The mean of a scalar over the ranks (the global batch's loss, for the log)."""
    if not ctx.enabled:
        return value.detach()
    total = value.detach().float().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / ctx.world_size


def scored_count(targets: Tensor) -> Tensor:
    """How many terms an objective's loss averages over: scored positions of class or token
    targets (``-100`` marks the others), every element of real-valued ones."""
    if targets.dtype.is_floating_point:
        return torch.tensor(float(targets.numel()), device=targets.device)
    return (targets != IGNORE).sum().float()


def weigh_share(loss: Tensor, targets: Tensor, ctx: DistContext) -> tuple[Tensor, Tensor]:
    """``(loss to backpropagate, the global batch's loss)`` for a rank's mean ``loss`` over ``targets``.

    With ``n_r`` scored targets on rank ``r`` of ``R`` and ``N = sum n_r``, backpropagating
    ``R n_r / N x loss_r`` makes DDP's average of the ranks' gradients the gradient of the global
    mean ``sum n_r loss_r / N``, which is returned (detached, the same on every rank): one
    all-reduce of ``[n_r loss_r, n_r]``.
    """
    count = scored_count(targets).to(loss.device)
    sums = torch.stack([loss.detach().float() * count, count])
    dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    return loss * (ctx.world_size * count / sums[1]), sums[0] / sums[1]


def agree(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when it is true on any (a stop request, a spent CPU budget)."""
    if not ctx.enabled:
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


T = TypeVar("T")


def from_writer(value: T, ctx: DistContext) -> T:
    """Rank 0's ``value`` on every rank (a picklable object: metrics, a stored row)."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
