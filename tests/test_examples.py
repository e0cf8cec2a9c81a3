"""Every shipped sweep config plans, and every model in it builds for every task it runs on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mixerlab.bench.compare import load_sweep, plan, preflight

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


def test_the_examples_folder_is_found():
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_plans_and_builds(path):
    sweep = load_sweep(yaml.safe_load(path.read_text(encoding="utf-8")))
    runs, _ = plan(sweep, log=lambda _: None)
    assert runs, f"{path.name} plans no runs"
    kept, skipped = preflight(runs, log=lambda _: None)
    assert len(kept) == len(runs), f"{path.name}: {skipped}"
    assert len({r.key for r in runs}) == len(runs)  # no two runs the same
