"""A run's key (the hash that finds it in a results store) never changes when fields are added.

The expected keys were computed by the code that wrote the first stores (before methods,
transforms, objectives and grids existed): if one of these changes, every stored result of the
default sweep would be re-run and shown twice. New fields at their defaults must stay out of it.
"""

from __future__ import annotations

from mixerlab.bench.compare import load_sweep, plan
from mixerlab.bench.defaults import DEFAULT_SWEEP
from mixerlab.train.config import RunConfig


def test_keys_of_runs_stored_before_new_fields_existed_are_unchanged():
    runs, _ = plan(load_sweep(DEFAULT_SWEEP), log=lambda message: None)
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
