"""Data parallel on CPU: two gloo processes, each on its share, follow the single-process loss curve."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from mixerlab.errors import ConfigError
from mixerlab.train import RunConfig, Trainer, from_dict
from mixerlab.train.config import to_dict
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


# -- the real path: `mixerlab train` (train_command) under two ranks, as torchrun runs it -----------

# A tiny LM on MQAR with 2 or 4 queries per example: a rank's share holds fewer or more scored
# tokens than the other's, so its loss must be weighted by its token count to follow one process.
LM_RUN = [
    "task.name=mqar",
    "task.options.vocab_size=32",
    "task.options.seq_len=16",
    "task.options.num_kv_pairs=[2,4]",
    "task.options.test_num_kv_pairs=[2,4]",
    "task.options.num_train=48",
    "task.options.num_test=32",
    "model.dim=16",
    "model.depth=1",
    "model.mixer=gla",
    "train.batch_size=16",
    "train.epochs=3",
    "train.max_steps=null",
    "train.target_metric=null",
    "train.eval_batch_size=64",
]


def _train_rank(
    rank: int, world: int, port: int, assignments: list[str], folder: str, stop_after: int | None, results
) -> None:
    """One torchrun rank: `mixerlab train` into ``folder``, counting the checkpoints it writes.

    ``stop_after``: rank 0 alone is asked to stop (Ctrl-C) after that many steps.
    """
    import mixerlab.train.trainer as trainer_module
    from mixerlab.train.distributed import leave
    from mixerlab.train.interrupts import Interrupted
    from mixerlab.train.run import train_command

    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    saves, save, polls = [], trainer_module.save_checkpoint, []

    def counted(path, payload) -> None:
        saves.append(payload["epoch"])
        save(path, payload)

    def should_stop() -> bool:
        polls.append(1)
        return rank == 0 and stop_after is not None and len(polls) > stop_after

    trainer_module.save_checkpoint = counted  # this forked process's own module
    batches = _record_batches(trainer_module)
    try:
        row, _ = train_command(
            None,
            {},
            assignments,
            store=f"{folder}/runs.sqlite",
            checkpoint=f"{folder}/run.pt",
            progress=False,
            log=None,
            should_stop=should_stop,
        )
        losses = [h["loss"] for h in row["history"]]
        results.put((rank, saves, losses, row["metric"], row["steps"], batches))
    except Interrupted:
        results.put((rank, saves, "interrupted", None, len(polls), batches))
    except Exception as err:  # reported to the test, which would otherwise wait for the row forever
        results.put((rank, repr(err), None, None, None, batches))
    finally:
        leave()


def _record_batches(trainer_module) -> list[tuple[int, int]]:
    """Make the trainer's step record each batch it trains on: (examples, sum of the token ids)."""
    batches, step = [], trainer_module.train_step

    def recorded(model, batch, **kwargs):
        batches.append((len(batch["targets"]), int(batch["inputs"].sum())))
        return step(model, batch, **kwargs)

    trainer_module.train_step = recorded
    return batches


def _two_ranks(assignments: list[str], folder, stop_after: int | None = None) -> list[tuple]:
    results = mp.get_context("fork").SimpleQueue()
    procs = mp.start_processes(
        _train_rank,
        args=(2, _free_port(), assignments, str(folder), stop_after, results),
        nprocs=2,
        join=False,
        start_method="fork",
    )
    got = sorted(results.get() for _ in range(2))
    procs.join()
    return got


def _store_rows(path) -> list[dict]:
    from mixerlab.bench.store import ResultStore

    store = ResultStore(path)
    try:
        return store.rows()
    finally:
        store.close()


def _weights(path) -> dict[str, torch.Tensor]:
    from mixerlab.train.checkpoint import load_checkpoint

    return load_checkpoint(path)["model"]


def _check_two_ranks_follow_one(assignments: list[str], tmp_path, *, interrupt: bool = False) -> None:
    """Two ranks against one process; ``interrupt``: stopped in epoch 2 first, then resumed."""
    import mixerlab.train.trainer as trainer_module
    from mixerlab.train.run import train_command

    step = trainer_module.train_step
    single_batches = _record_batches(trainer_module)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    try:
        one, _ = train_command(
            None,
            {},
            assignments,
            store=tmp_path / "one" / "runs.sqlite",
            checkpoint=tmp_path / "one" / "run.pt",
            progress=False,
            log=None,
        )
    finally:
        trainer_module.train_step = step
    curve = [h["loss"] for h in one["history"]]
    epochs = [1, 2, 3]
    if interrupt:
        # Rank 0 alone is asked to stop at step 5 (of 3 per epoch): both stop there, none waits.
        stopped = _two_ranks(assignments, tmp_path / "two", stop_after=4)
        assert [(saves, losses, polls) for _, saves, losses, _, polls, _ in stopped] == [
            ([1], "interrupted", 5),
            ([], "interrupted", 5),
        ]
        epochs = [2, 3]  # the resumed run starts after the checkpoint of epoch 1
    got = _two_ranks(assignments, tmp_path / "two")
    for rank, saves, losses, metric, steps, _ in got:
        assert losses is not None, f"rank {rank} failed: {saves}"
        # Same global batches, same curve and metric on every rank (DDP kept the replicas in step).
        assert losses == pytest.approx(curve, rel=1e-5), rank
        assert metric == pytest.approx(one["metric"], rel=1e-5) and steps == one["steps"]
    # Each rank trained on half of every global batch, and the halves make up the whole.
    shares = [batches for *_, batches in got]
    assert {size for share in shares for size, _ in share} == {8}
    resumed = single_batches[len(single_batches) - len(shares[0]) :]
    assert [a + b for (_, a), (_, b) in zip(*shares)] == [total for _, total in resumed]
    # Rank 0 wrote a checkpoint after each epoch; rank 1 none; one row in the store.
    assert [saves for _, saves, *_ in got] == [epochs, []]
    rows = _store_rows(tmp_path / "two" / "runs.sqlite")
    # The row of the same run (the number of processes is not part of a run's identity).
    assert [row["run_key"] for row in rows] == [one["run_key"]] and rows[0]["steps"] == one["steps"]
    # The checkpoint holds whole weights (gathered under FSDP), equal to the one-process run's. The
    # absolute tolerance is for embedding rows of rare characters: their gradients are ~1e-9, where
    # the all-reduce's rounding moves Adam's normalised step (it was 2e-5 after 9 steps).
    single, double = _weights(tmp_path / "one" / "run.pt"), _weights(tmp_path / "two" / "run.pt")
    assert single.keys() == double.keys()
    for name in single:
        torch.testing.assert_close(double[name], single[name], rtol=1e-5, atol=1e-4)


def test_torchrun_ddp_train_follows_one_process_and_writes_once(tmp_path):
    _check_two_ranks_follow_one(LM_RUN, tmp_path)


def test_torchrun_fsdp_train_stopped_and_resumed_follows_one_process(tmp_path):
    _check_two_ranks_follow_one([*LM_RUN, "train.distributed=fsdp"], tmp_path, interrupt=True)


def _pretend_ranks(monkeypatch, world: int) -> None:
    """The trainer believes it is rank 0 of ``world`` (no process group: it fails before any collective)."""
    import mixerlab.train.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "from_environment", lambda backend: DistContext(0, world))


def test_a_batch_that_does_not_split_over_the_ranks_is_refused(monkeypatch):
    _pretend_ranks(monkeypatch, 3)
    with pytest.raises(ConfigError, match="train.batch_size.*16.*3 processes"):
        Trainer(config(), progress=False)


def test_a_method_that_runs_the_model_piece_by_piece_is_refused(monkeypatch):
    _pretend_ranks(monkeypatch, 2)
    run = from_dict(RunConfig, {**to_dict(config()), "method": {"name": "early_exit"}})
    with pytest.raises(ConfigError, match="method.*early_exit.*2 processes"):
        Trainer(run, progress=False)


def test_the_strategy_is_checked():
    with pytest.raises(ConfigError, match="train.*distributed.*zero.*'ddp' or 'fsdp'"):
        from_dict(RunConfig, {"train": {"distributed": "zero"}})


def _weigh_rank(rank: int, world: int, port: int, results) -> None:
    """A rank's share of the global loss: 2 scored targets on rank 0, 1 on rank 1."""
    from mixerlab.train.distributed import weigh_share

    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    ctx = from_environment("gloo")
    try:
        targets = torch.tensor([[1, 2, -100]]) if rank == 0 else torch.tensor([[-100, 3, -100]])
        weighted, reported = weigh_share(torch.tensor([2.0, 5.0][rank]), targets, ctx)
        _, diverged = weigh_share(torch.tensor([2.0, float("nan")][rank]), targets, ctx)
        results.put((rank, float(weighted), float(reported), float(diverged)))
    finally:
        torch.distributed.destroy_process_group()


def test_each_rank_weighs_its_loss_by_its_scored_targets_and_a_nan_anywhere_is_seen_everywhere():
    results = mp.get_context("fork").SimpleQueue()
    procs = mp.start_processes(
        _weigh_rank, args=(2, _free_port(), results), nprocs=2, join=False, start_method="fork"
    )
    (_, w0, r0, d0), (_, w1, r1, d1) = sorted(results.get() for _ in range(2))
    procs.join()
    # The global mean over the 3 scored targets is (2 x 2.0 + 1 x 5.0) / 3; DDP averages the
    # weighted losses' gradients, (w0 + w1) / 2, which must be that mean.
    assert r0 == r1 == pytest.approx(3.0) and (w0 + w1) / 2 == pytest.approx(3.0)
    assert w0 == pytest.approx(2 * 2 / 3 * 2.0) and w1 == pytest.approx(2 * 1 / 3 * 5.0)
    # A NaN on rank 1 alone is the global loss on both, so both skip the backward pass.
    assert math.isnan(d0) and math.isnan(d1)
