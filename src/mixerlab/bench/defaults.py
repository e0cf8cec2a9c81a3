"""The default comparison of ``mixerlab compare``, as plain data.

MQAR recall (vocabulary 32, length 32, 2 or 4 key-value pairs, 5000 training examples) for six
token mixers at two widths (32, 64), two learning rates and two seeds: 48 runs. Every run gets
the same budget of 400 optimiser steps of 64 sequences (about 5 epochs; the learning-rate
schedule ends there) and stops early at 0.99 accuracy, so a run is a function of its config and
seed and a re-run gives the same metrics. ``max_cpu_seconds`` is only a safety cap, well above
what the slowest run needs (mamba at width 64: about 0.28 CPU-seconds a step on one thread, so
about 110 s); a run it ends says so (status ``time_limit``).

Sized from measured CPU time: the 48 runs train for about 1400 CPU-seconds in all (one thread
each; mamba is over half of it), so about 12-13 minutes with two worker processes on 2 idle
cores. At 400 steps no model has yet learned the 4-pair recall (best 0.51, most 0.25-0.43);
softmax attention at width 64 needs about 600 (0.89 at 600 steps, lr 3e-3), which costs half as
much time again.

Per-mixer options are written here as spec dicts, never as code; if fewer than ``min_models``
are given, other registered mixers fill in.
"""

from __future__ import annotations

from typing import Any

DEFAULT_SWEEP: dict[str, Any] = {
    "name": "mqar-default",
    "task": {
        "name": "mqar",
        "options": {
            "vocab_size": 32,
            "seq_len": 32,
            "num_kv_pairs": [2, 4],
            "test_num_kv_pairs": [2, 4],
            "num_train": 5000,
            "num_test": 250,
        },
        "seed": 0,
    },
    "models": [
        {"name": "attention", "num_heads": 2},
        {"name": "sliding_window", "num_heads": 2, "window": 8},
        "gla",
        "mamba",
        "mingru",
        "hyena",
    ],
    "min_models": 6,
    "widths": [32, 64],
    "lrs": [3e-3, 1e-2],
    "seeds": [0, 1],
    "model": {"name": "lm", "depth": 2, "channel_mixer": "swiglu", "norm": "rmsnorm"},
    "train": {
        "epochs": 10,
        "max_steps": 400,
        "batch_size": 64,
        "warmup_frac": 0.1,
        "weight_decay": 0.1,
        "grad_clip": 1.0,
        "target_metric": 0.99,
        "max_cpu_seconds": 300,
    },
}

# A sweep that finishes in seconds: for CI and for trying the pipeline.
TINY_SWEEP: dict[str, Any] = {
    "name": "mqar-tiny",
    "task": {
        "name": "mqar",
        "options": {
            "vocab_size": 16,
            "seq_len": 16,
            "num_kv_pairs": [2, 4],
            "num_train": 128,
            "num_test": 32,
        },
        "seed": 0,
    },
    "models": [
        {"name": "attention", "num_heads": 2},
        {"name": "sliding_window", "num_heads": 2, "window": 4},
    ],
    "widths": [16],
    "lrs": [3e-3],
    "seeds": [0, 1],
    "model": {"name": "lm", "depth": 1},
    "train": {"epochs": 2, "batch_size": 32},
}
