"""Data parallel on CPU: two gloo processes, each on its share, follow the single-process loss curve."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from mixerlab.errors import ConfigError
from mixerlab.train import RunConfig, Trainer, from_dict
from mixerlab.train.distributed import (
    DistContext,
    check_shardable,
    from_environment,
    mean_over_ranks,
    shard,
    wrap,
)
from mixerlab.train.trainer import train_step

STEPS, BATCH = 5, 16


def config() -> RunConfig:
    return from_dict(
        RunConfig,
        {
            "task": {"name": "synthetic_table", "options": {"num_examples": 96}},
            "model": {"name": "tabular", "dim": 8, "depth": 1},
            "train": {"batch_size": BATCH, "lr": 1e-2, "seed": 3},
        },
    )


def losses_and_weights(ctx: DistContext) -> tuple[list[float], list[torch.Tensor], list[int]]:
    """The trainer's pieces stepped by hand: same seed, same order, this rank's share of each batch."""
    trainer = Trainer(config(), progress=False)
    model = wrap(trainer.model, ctx)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    order = torch.randperm(len(trainer.train_data), generator=torch.Generator().manual_seed(3))
    check_shardable(len(trainer.train_data), BATCH, ctx)
    losses, seen = [], []
    for step in range(STEPS):
        indices = shard(order[step * BATCH : (step + 1) * BATCH], ctx)
        seen += indices.tolist()
        loss = train_step(
            model,
            trainer.train_data.batch(indices),
            method=trainer.method,
            objective=trainer.objective,
            optimizer=optimizer,
            step=step,
            grad_clip=1.0,
            bf16=False,
        )
        losses.append(float(mean_over_ranks(loss, ctx)))
    return losses, [p.detach().clone() for p in trainer.model.parameters()], seen


def _rank(rank: int, world: int, port: int, results) -> None:
    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    torch.set_num_threads(1)
    ctx = from_environment("gloo")
    try:
        losses, weights, seen = losses_and_weights(ctx)
        # Plain lists: a tensor would travel as a handle into memory this process frees on exit.
        results.put((rank, losses, [w.tolist() for w in weights], seen))
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_follow_the_single_process_loss_curve():
    single_losses, single_weights, single_seen = losses_and_weights(DistContext())
    ctx = mp.get_context("fork")
    results = ctx.SimpleQueue()
    procs = mp.start_processes(
        _rank, args=(2, _free_port(), results), nprocs=2, join=False, start_method="fork"
    )
    got = sorted(results.get() for _ in range(2))
    procs.join()
    for rank, losses, weights, _ in got:
        assert losses == pytest.approx(single_losses, rel=1e-5), rank
        for a, b in zip(weights, single_weights):
            torch.testing.assert_close(torch.tensor(a), b, rtol=1e-5, atol=1e-6)
    # The two ranks saw different examples but hold the same weights (DDP kept them in step).
    assert got[0][2] == got[1][2]
    # Each saw its half of every global batch: disjoint halves that make up the single run's batches.
    assert not set(got[0][3]) & set(got[1][3]) and sorted(got[0][3] + got[1][3]) == sorted(single_seen)


def test_shares_are_contiguous_equal_and_cover_the_batch():
    indices = torch.arange(12)
    parts = [shard(indices, DistContext(rank=r, world_size=3)) for r in range(3)]
    assert torch.equal(torch.cat(parts), indices) and {len(p) for p in parts} == {4}
    assert torch.equal(shard(indices, DistContext()), indices)
    with pytest.raises(ConfigError, match="batch_size"):
        check_shardable(100, 16, DistContext(rank=0, world_size=3))
    with pytest.raises(ConfigError, match="last batch"):
        check_shardable(100, 16, DistContext(rank=0, world_size=8))  # the last batch has 4
    check_shardable(96, 16, DistContext(rank=1, world_size=2))
