"""The default comparison of ``mixerlab compare``, as plain data.

MQAR recall (vocabulary 32, length 32, 2 or 4 key-value pairs, 5000 training examples) for six
token mixers at two widths (32, 64), two learning rates and two seeds: 48 runs, sized to finish in
under 15 minutes on a 2-core laptop CPU with two worker processes. Every run gets the same
budget: 10 epochs (790 steps of 64 sequences) or 25 CPU-seconds of training, whichever comes
first (status ``time_limit`` in the results), and stops early at 0.99 accuracy. Softmax attention
at width 64 and lr 3e-3 reaches 0.99 in 8-9 epochs (measured, both seeds; 0.976 after epoch 7, about
21 CPU-seconds on a loaded machine).

Mixers that are not registered are skipped with a note; if fewer than ``min_models`` remain,
other registered mixers fill in. Per-mixer options are written here as spec dicts, never as code.
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
        "batch_size": 64,
        "warmup_frac": 0.1,
        "weight_decay": 0.1,
        "grad_clip": 1.0,
        "target_metric": 0.99,
        "max_cpu_seconds": 25,
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
