"""``compare --executor ray``: a sweep on a local Ray instance gives the rows the local pool gives."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

import mixerlab
from mixerlab.bench.compare import compare
from mixerlab.bench.defaults import TINY_SWEEP
from mixerlab.bench.store import ResultStore
from mixerlab.errors import ConfigError

# The tiny sweep with one seed: two runs (attention, sliding window).
SWEEP = {**copy.deepcopy(TINY_SWEEP), "seeds": [0]}


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module (starting one costs seconds)."""
    ray = pytest.importorskip("ray", reason="the ray executor needs the ray extra")
    # Ray's workers import mixerlab from where this process does (a source checkout too).
    source = str(Path(mixerlab.__file__).resolve().parents[1])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": source, "OMP_NUM_THREADS": "1"}},
    )
    yield ray
    ray.shutdown()


def _metrics(store: Path) -> dict[str, tuple]:
    rows = ResultStore(store).rows()
    return {r["run_key"]: (r["metric"], r["slices"], r["params"], r["steps"], r["status"]) for r in rows}


def test_a_sweep_on_ray_matches_the_local_pool_and_resumes_from_the_store(ray_instance, tmp_path):
    logs: list[str] = []
    on_ray = compare(SWEEP, out_dir=tmp_path / "ray", executor="ray", report=False, log=logs.append)
    assert on_ray.failed == [] and len(on_ray.finished) == on_ray.planned == 2
    local = compare(SWEEP, out_dir=tmp_path / "local", workers=1, report=False, log=logs.append)
    ray_rows, local_rows = (
        _metrics(tmp_path / "ray" / "results.sqlite"),
        _metrics(tmp_path / "local" / "results.sqlite"),
    )
    assert set(ray_rows) == set(local.finished) and ray_rows == local_rows
    # Nothing left in flight: the checkpoints of finished runs were removed.
    assert list((tmp_path / "ray" / "checkpoints").glob("*.pt")) == []
    again = compare(SWEEP, out_dir=tmp_path / "ray", executor="ray", report=False, log=logs.append)
    assert again.skipped_done == 2 and again.finished == [] and again.failed == []
    assert _metrics(tmp_path / "ray" / "results.sqlite") == ray_rows


def test_an_unknown_executor_or_an_address_without_ray_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"executor='dask'.*expected one of \['local', 'ray'\]"):
        compare(SWEEP, out_dir=tmp_path, executor="dask")
    with pytest.raises(ConfigError, match="ray_address='ray://head:10001'.*only with executor='ray'"):
        compare(SWEEP, out_dir=tmp_path, ray_address="ray://head:10001")
    assert not tmp_path.joinpath("results.sqlite").exists()
