"""How a comparison's runs are run: in this process or a local pool of spawned processes, or on Ray.

An executor takes the planned runs, their :func:`~mixerlab.bench.compare_run.run_one` arguments,
the number of workers and a ``record`` callback, and returns whether the sweep was interrupted.
``local`` is defined here; ``ray`` is :func:`mixerlab.bench.ray_executor.run_on_ray`, which runs
the same :func:`_run_safely` as a Ray task. Interrupt handling (workers ignore SIGINT and die with
the parent; the first Ctrl-C stops the runs, the second kills the workers) is described in
:mod:`mixerlab.bench.compare`.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from mixerlab.bench.compare_plan import PlannedRun
from mixerlab.bench.compare_run import run_one
from mixerlab.errors import check
from mixerlab.train.interrupts import Interrupted, stop_on_interrupt

# In a worker process: the sweep's stop event (set by the parent on the first Ctrl-C).
_STOP: Any = None


def _init_worker(threads: int, stop: Any, parent: int) -> None:
    global _STOP
    # Ctrl-C reaches every process of the terminal's group; only the parent acts on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    _STOP = stop
    torch.set_num_threads(threads)


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when the parent dies (Linux), so none is ever orphaned."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _run_safely(
    config, label, sweep, checkpoint_dir, axes=None, should_stop: Callable[[], bool] | None = None
) -> tuple[str, dict | None, str]:
    if should_stop is None and _STOP is not None:
        should_stop = _STOP.is_set
    if should_stop is not None and should_stop():
        return "interrupted", None, ""  # queued before the stop: never started
    try:
        return "ok", run_one(config, label, sweep, checkpoint_dir, axes, should_stop=should_stop), ""
    except Interrupted:
        return "interrupted", None, ""
    except Exception:  # a broken mixer must not take the sweep down; the error is reported
        return "error", None, traceback.format_exc()


# Seconds the workers get to stop after the first Ctrl-C before they are killed.
STOP_GRACE_SECONDS = 10.0


# How a sweep's runs are run: (runs, their run_one arguments, workers, record) -> interrupted.
# ``record(run, status, row, error)`` is called in this process as each run ends.
Executor = Callable[[list[PlannedRun], list[tuple], int, Callable[..., None]], bool]


EXECUTORS = ("local", "ray")


def executor_for(name: str, ray_address: str | None = None) -> Executor:
    """The executor called ``name``; ``ray`` needs the ``ray`` package (the ``ray`` extra)."""
    check(name in EXECUTORS, "compare", "executor", name, f"expected one of {list(EXECUTORS)}")
    check(
        name == "ray" or ray_address is None,
        "compare",
        "ray_address",
        ray_address,
        "only with executor='ray'",
    )
    if name == "local":
        return _run_locally
    import importlib.util

    check(
        importlib.util.find_spec("ray") is not None,
        "compare",
        "executor",
        name,
        "the ray executor needs the 'ray' package: pip install 'mixerlab[ray]'",
    )
    from mixerlab.bench.ray_executor import run_on_ray

    return functools.partial(run_on_ray, address=ray_address)


def _run_locally(
    todo: list[PlannedRun], args: list[tuple], workers: int, record: Callable[..., None]
) -> bool:
    """In this process (one worker or one run), else in a pool of spawned processes."""
    if workers > 1 and len(todo) > 1:
        return _run_in_pool(todo, args, min(workers, len(todo)), record)
    # One thread, as in a worker process: the same run costs the same either way.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with stop_on_interrupt() as request:
            for run, a in zip(todo, args):
                record(run, *_run_safely(*a, should_stop=request))
                if request.requested:
                    break
            return request.requested
    finally:
        torch.set_num_threads(threads)


def _run_in_pool(
    todo: list[PlannedRun], args: list[tuple], workers: int, record: Callable[..., None]
) -> bool:
    """Run ``args`` on ``workers`` spawned processes, recording each result; True if interrupted."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    with stop_on_interrupt(on_first=stop.set) as request:
        # Workers start with SIGINT blocked (the mask is inherited through spawn), so a Ctrl-C
        # during their start-up cannot raise in them; a Ctrl-C meanwhile waits for the parent.
        mask = getattr(signal, "pthread_sigmask", lambda how, signals: None)  # POSIX only
        mask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pool = cf.ProcessPoolExecutor(
                max_workers=workers,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(1, stop, os.getpid()),
            )
            futures = {pool.submit(_run_safely, *a): run for run, a in zip(todo, args)}
        finally:
            mask(signal.SIG_UNBLOCK, {signal.SIGINT})
        pending, deadline = set(futures), None
        try:
            while pending:
                finished, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    if future.cancelled():
                        continue
                    try:
                        outcome = future.result()
                    except Exception as err:  # a worker died (killed, out of memory)
                        outcome = ("error", None, f"{type(err).__name__}: {err}")
                    record(futures[future], *outcome)
                if request.requested:
                    for future in pending:
                        future.cancel()
                    pending = {f for f in pending if not f.cancelled()}
                    deadline = deadline or time.monotonic() + STOP_GRACE_SECONDS
                    if time.monotonic() > deadline:
                        _kill_workers()
                        break
        except BaseException:  # the second Ctrl-C: stop at once
            _kill_workers()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True, cancel_futures=True)
        return request.requested


def _kill_workers() -> None:
    for child in multiprocessing.active_children():
        child.kill()
    for child in multiprocessing.active_children():
        child.join(timeout=5)
