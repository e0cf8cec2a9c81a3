"""Timing and memory primitives shared by the benchmarks.

Times are medians over repeats after warm-up (``time.perf_counter``). Peak memory on CPU is the
growth of the process's resident-set high-water mark during the call: Linux lets a process reset
``VmHWM`` by writing ``5`` to ``/proc/self/clear_refs``, so each measurement starts from the
current resident size. Freed memory that the allocator keeps and reuses is not counted again, so
the figure is a lower bound for small allocations; large tensors are ``mmap``-ed and returned to
the system when freed, so they are counted each time. Where the reset is not available the
figure is ``nan`` rather than a wrong number.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch


@dataclass
class Timing:
    median_s: float
    best_s: float
    repeats: int


def time_call(
    fn: Callable[[], object], *, repeats: int, warmup: int, max_seconds: float = math.inf
) -> Timing:
    """Median wall time of ``fn()``; stops repeating early once ``max_seconds`` have been spent."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    spent = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        spent += elapsed
        if spent > max_seconds:
            break
    return Timing(statistics.median(times), min(times), len(times))


def _read_status_kb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    return math.nan


def _trim_heap() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def tune_allocator() -> bool:
    """Keep large freed blocks in the heap instead of unmapping them (glibc only).

    By default glibc serves every allocation of 32 MiB or more with a fresh ``mmap`` and unmaps it
    on free, so each large temporary is page-faulted in again: at L=16k that cost, not the
    mixer, dominates (measured: linear_attention's time per token at 16k goes from 1.09x of 1k
    with this setting to 1.91x without). It is a setting of the benchmark process, never of the
    library. Peak memory stays measurable because :func:`peak_memory_mb` trims the heap first.
    Returns whether the allocator accepted the settings.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1
    ok &= libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1) == 1
    ok &= libc.mallopt(_M_TOP_PAD, 512 << 20) == 1
    return bool(ok)


def available_memory_mb() -> float:
    """``MemAvailable`` of /proc/meminfo in MiB; ``inf`` where it cannot be read (no guard)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) / 1024
    except OSError:
        pass
    return math.inf


@contextlib.contextmanager
def memory_cap(mb: float) -> Iterator[None]:
    """Let the process map at most ``mb`` MiB more while the block runs (Linux ``RLIMIT_AS``).

    An allocation past the cap fails with a ``RuntimeError`` (or ``MemoryError``) inside the block,
    which the caller can report, instead of the kernel's OOM killer ending the whole process
    (and every figure not yet written). Where limits are unavailable the block runs uncapped.
    """
    try:
        import resource

        mapped_kb = _read_status_kb("VmSize")
        old = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (int((mapped_kb + mb * 1024) * 1024), old[1]))
    except (ImportError, OSError, ValueError):  # ValueError: also VmSize missing (nan)
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


def peak_memory_mb(fn: Callable[[], object]) -> float:
    """Growth of resident memory (MiB) while ``fn()`` runs; ``nan`` where it cannot be measured."""
    _trim_heap()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _read_status_kb("VmRSS")
    except OSError:
        fn()
        return math.nan
    fn()
    peak = _read_status_kb("VmHWM")
    return max(0.0, (peak - before) / 1024.0)


def matmul_gflops(dtype: torch.dtype, n: int = 1024, repeats: int = 10, rounds: int = 3) -> float:
    """Dense ``n x n x n`` matmul throughput of this machine: the best of ``rounds`` medians.

    One round lasts ~0.1 s, so a burst of other work can halve it (a single round once read 115
    GFLOP/s on a machine that gives 187); taking the best round keeps the yardstick what the
    machine can do, so shares of it are not inflated."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    medians = [
        time_call(lambda: torch.matmul(a, b), repeats=repeats, warmup=3).median_s for _ in range(rounds)
    ]
    return 2 * n**3 / min(medians) / 1e9


def machine_info() -> dict[str, object]:
    """CPU model, thread count, versions: recorded with every benchmark table."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    return {
        "cpu": model,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
