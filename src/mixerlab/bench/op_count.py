"""Counting the ATen ops a function dispatches: the cost model of a step loop on a GPU.

A strictly sequential mixer (sLSTM, SRWM) runs one small step after another, so on a GPU its time
is about (kernels launched per step) x (launch latency) rather than its FLOPs. The number of
dispatched ops per step is therefore the structural measure of such a loop, independent of the
machine: :func:`ops_per_step` takes it as the difference between two sequence lengths, so the
ops done once per call (layout changes, hoisted projections) cancel out.

Ops are sorted into ``kernels`` (anything that computes or writes memory, in-place ops included),
``views`` (results that alias an input: slicing, reshapes, unbind; no kernel on any device) and
``allocations`` (``empty`` and friends: uninitialised memory from the caching allocator, no kernel).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mixerlab.errors import check

_ALLOCATIONS = {"empty", "empty_like", "new_empty", "empty_strided", "new_empty_strided"}


def _is_view(func: torch._ops.OpOverload) -> bool:
    """True when every result aliases an input without writing it (a view)."""
    returns = func._schema.returns
    return bool(returns) and all(r.alias_info is not None and not r.alias_info.is_write for r in returns)


@dataclass
class OpCount:
    """Dispatched ATen ops by kind; ``by_name`` counts kernels per op name."""

    kernels: int = 0
    views: int = 0
    allocations: int = 0
    by_name: Counter = field(default_factory=Counter)


class _Counter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = OpCount()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if _is_view(func):
            self.count.views += 1
        elif name in _ALLOCATIONS:
            self.count.allocations += 1
        else:
            self.count.kernels += 1
            self.count.by_name[name] += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], object]) -> OpCount:
    """Run ``fn()`` once and count the ATen ops it dispatches (autograd's backward included)."""
    with _Counter() as counter:
        fn()
    return counter.count


def ops_per_step(run: Callable[[int], object], lengths: tuple[int, int] = (8, 16)) -> OpCount:
    """Ops per step of ``run(T)``: the counts at two lengths, differenced and divided by the gap.

    Counts are returned as floats when the difference does not divide evenly, which itself says
    that the per-step work is not constant.
    """
    short, long = lengths
    check(0 <= short < long, "ops_per_step", "lengths", lengths, "expected two increasing lengths >= 0")
    a, b = count_ops(lambda: run(short)), count_ops(lambda: run(long))
    gap = long - short

    def per(x: float, y: float) -> float:
        d = (y - x) / gap
        return int(d) if d == int(d) else d

    names = {n: per(a.by_name[n], b.by_name[n]) for n in set(a.by_name) | set(b.by_name)}
    return OpCount(
        kernels=per(a.kernels, b.kernels),
        views=per(a.views, b.views),
        allocations=per(a.allocations, b.allocations),
        by_name=Counter({n: v for n, v in names.items() if v}),
    )
