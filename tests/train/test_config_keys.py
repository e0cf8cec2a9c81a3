"""A run's key (the hash that finds it in a results store) never changes when fields are added.

The expected keys were computed by the code that wrote the first stores (before methods,
transforms, objectives and grids existed): if one of these changes, every stored result of the
default sweep would be re-run and shown twice. New fields at their defaults must stay out of it.
"""

from __future__ import annotations

from mixerlab.bench.compare import load_sweep, plan
from mixerlab.train.config import RunConfig

# The default sweep as the first stores were written with it (the default may move on; these
# stored runs must still be found).
FIRST_DEFAULT_SWEEP = {
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


def test_keys_of_runs_stored_before_new_fields_existed_are_unchanged():
    runs, _ = plan(load_sweep(FIRST_DEFAULT_SWEEP), log=lambda message: None)
    assert len(runs) == 48
    assert runs[0].key == "936fba97ddbdc4f9" and runs[-1].key == "371076008dc34eab"
    assert RunConfig().key() == "d694cbbfa8b53c27"


def test_a_new_field_away_from_its_default_changes_the_key():
    base = RunConfig()
    other = RunConfig()
    other.method.name = "gradient_noise"
    assert other.key() != base.key()
    other = RunConfig(transforms=[{"name": "prune_magnitude"}])
    assert other.key() != base.key()
