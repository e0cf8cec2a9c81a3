"""Learning-rate schedules as multipliers of the peak learning rate."""

from __future__ import annotations

import math

from mixerlab.errors import check


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    """Linear warm-up to 1 over ``warmup_steps``, then cosine decay to ``min_ratio`` at ``total_steps``.

    ``step`` counts optimiser updates from 0; the first update uses ``1 / warmup_steps``.
    """
    check(total_steps > 0, "schedule", "total_steps", total_steps, "expected > 0")
    check(
        0 <= warmup_steps <= total_steps, "schedule", "warmup_steps", warmup_steps, "expected in [0, total]"
    )
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
