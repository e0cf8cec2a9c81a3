"""The op counter behind the step-loop benchmarks and the per-step op budgets of sequential mixers."""

from __future__ import annotations

import pytest
import torch

from mixerlab.bench.op_count import count_ops, ops_per_step
from mixerlab.errors import ConfigError


def test_kernels_views_and_allocations_are_told_apart():
    a, b = torch.randn(4, 3), torch.randn(4, 3)

    def fn():
        c = (a + b).view(3, 4)  # one kernel, one view
        out = torch.empty(3, 4)  # one allocation
        torch.mul(c, 2, out=out)  # one kernel
        out.add_(1)  # in-place: a kernel too

    count = count_ops(fn)
    assert (count.kernels, count.views, count.allocations) == (3, 1, 1)
    assert count.by_name == {"add": 1, "mul": 1, "add_": 1}


def test_per_step_count_cancels_the_fixed_part():
    def run(T):
        x = torch.zeros(3)  # once per call
        for _ in range(T):
            x = torch.tanh(x + 1)  # two kernels per step
        return x

    per = ops_per_step(run, lengths=(2, 5))
    assert per.kernels == 2 and per.by_name == {"add": 1, "tanh": 1}
    with pytest.raises(ConfigError, match="lengths"):
        ops_per_step(run, lengths=(5, 5))
