"""Sweeps on Ray: each run of a sweep as one Ray task (``mixerlab compare --executor ray``).

The same runs as the local pool (:func:`mixerlab.bench.executors._run_safely`, one CPU and one
torch thread each), scheduled by Ray over a cluster's CPUs: ``address`` (or ``RAY_ADDRESS``)
joins a running cluster; without one, Ray starts a local instance with ``workers`` CPUs and
stops it at the end. A Ray instance this process already started (``ray.init`` in a script or
test) is used as it is. Every row is written to the store here, in the driver, as its task
finishes, so a sweep on Ray resumes from the store as a local one does. Mixerlab (with the same
version) must be importable on every node; a run resumes from its per-epoch checkpoint only where
the checkpoint folder is shared between the nodes (finished runs always come from the store).

Ctrl-C: the first cancels every task (queued ones never start; running ones stop with their
last checkpoint kept) and returns once they have ended; the rows already written stay. The
second force-kills the tasks and raises :class:`KeyboardInterrupt` at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mixerlab.train.interrupts import stop_on_interrupt


def _run_task(*args: Any) -> tuple[str, dict | None, str]:
    """One run inside a Ray worker, with one torch thread as in the local pool's workers."""
    import torch

    from mixerlab.bench.executors import _run_safely

    torch.set_num_threads(1)
    return _run_safely(*args)


def run_on_ray(
    todo: list[Any],
    args: list[tuple],
    workers: int,
    record: Callable[..., None],
    *,
    address: str | None = None,
) -> bool:
    """Run ``args`` as Ray tasks, recording each result as it arrives; True if interrupted."""
    import ray
    from ray.exceptions import RayError, TaskCancelledError

    address = address or os.environ.get("RAY_ADDRESS") or None
    started_here = not ray.is_initialized()
    if started_here:
        if address is None:
            # A local instance sized like the local pool.
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_run_task)
        runs = {task.remote(*a): run for run, a in zip(todo, args)}
        pending = list(runs)
        with stop_on_interrupt() as request:
            cancelled = False
            try:
                while pending:
                    if request.requested and not cancelled:
                        for ref in pending:
                            ray.cancel(ref)
                        cancelled = True
                    ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                    for ref in ready:
                        try:
                            outcome = ray.get(ref)
                        except TaskCancelledError:
                            outcome = ("interrupted", None, "")
                        except RayError as err:  # the worker died, or the task raised past _run_safely
                            outcome = ("error", None, f"{type(err).__name__}: {err}")
                            if cancelled:
                                outcome = ("interrupted", None, "")
                        record(runs[ref], *outcome)
            except KeyboardInterrupt:  # the second Ctrl-C: stop at once
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise
            return request.requested
    finally:
        if started_here:
            ray.shutdown()
