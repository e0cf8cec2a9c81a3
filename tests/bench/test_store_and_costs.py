"""Results store (one row per run, keyed, never duplicated) and cost measurements."""

from __future__ import annotations

import math
import socket

import pytest
import torch

import mixerlab
from mixerlab.bench.costs import count_parameters, flops_per_token, measure_costs, training_memory_bytes
from mixerlab.bench.store import ResultStore, check_store, database_url
from mixerlab.errors import ConfigError

# The store tests take ``store_url`` (tests/bench/conftest.py): each runs once on an SQLite file and
# once on a real PostgreSQL server, with the same assertions.


def test_store_writes_reads_and_refuses_duplicates(store_url):
    store = ResultStore(store_url)
    row = {
        "run_key": "abc",
        "sweep": "s",
        "task": "mqar",
        "mixer": "attention",
        "metric": 0.5,
        "config": {"train": {"lr": 1e-3}},
        "slices": {"num_kv_pairs": {"4": 1.0}},
    }
    assert store.write(row) is True
    assert store.write({**row, "metric": 0.9}) is False
    assert store.write({**row, "run_key": "def", "task": "digits", "mixer": "gla"}) is True
    rows = store.rows(task="mqar")
    assert len(rows) == 1 and rows[0]["metric"] == 0.5 and rows[0]["config"]["train"]["lr"] == 1e-3
    assert rows[0]["slices"] == {"num_kv_pairs": {"4": 1.0}} and rows[0]["created_at"] is not None
    assert [r["run_key"] for r in store.rows()] == ["abc", "def"]  # in the order they were written
    assert store.get("def")["mixer"] == "gla" and store.get("nope") is None
    assert store.distinct("mixer") == ["attention", "gla"]
    assert store.finished_keys() == {"abc", "def"}
    assert store.rows(sweep="other") == []
    with pytest.raises(ValueError, match="unknown result columns"):
        store.write({"run_key": "x", "colour": "red"})
    with pytest.raises(ValueError, match="run_key"):
        store.write({"sweep": "s", "metric": 0.1})
    store.close()
    # A second connection sees the same data (a file next to the run, or the server).
    again = ResultStore(store_url)
    assert again.finished_keys() == {"abc", "def"}
    again.close()


def test_values_read_back_the_same_on_every_backend(store_url):
    nan, inf = float("nan"), float("inf")
    long_label = "x" * 1000  # longer than any length a column once declared
    store = ResultStore(store_url)
    store.write(
        {
            "run_key": "k",
            "mixer": long_label,
            "device": "cuda:0 " + "y" * 300,
            "seed": 2**40,  # a 64-bit seed
            "params": 3 * 2**40,
            "metric": nan,  # no value: NULL, as SQLite stores a NaN
            "tokens_per_s": inf,
            "lr": 3e-3,
            "higher_is_better": False,
            # JSON columns keep what a diverged run records, which PostgreSQL's JSON refuses as text.
            "history": [{"loss": nan}, {"loss": inf, "grad": -inf}, {"loss": 1.5}],
            "config": {"note": "µ-mixer ✓", "nested": [1, [2.5, None], {"$float": "not a tag"}]},
        }
    )
    (row,) = store.rows()
    assert row["mixer"] == long_label and row["device"].endswith("y" * 300)
    assert row["seed"] == 2**40 and row["params"] == 3 * 2**40 and row["lr"] == 3e-3
    assert row["metric"] is None and row["tokens_per_s"] == inf and row["higher_is_better"] is False
    history = row["history"]
    assert math.isnan(history[0]["loss"]) and history[1] == {"loss": inf, "grad": -inf}
    assert history[2] == {"loss": 1.5}
    assert row["config"] == {"note": "µ-mixer ✓", "nested": [1, [2.5, None], {"$float": "not a tag"}]}
    store.close()


def test_a_reader_creates_nothing_and_the_store_check_names_the_problem(store_url):
    with pytest.raises(ConfigError, match="store"):
        check_store(store_url, must_exist=True)
    with pytest.raises(ConfigError, match="runs table|empty file"):
        ResultStore(store_url, create=False)
    with pytest.raises(ConfigError, match="store"):
        check_store(store_url, must_exist=True)  # still nothing there
    ResultStore(store_url).close()
    check_store(store_url, must_exist=True)
    assert ResultStore(store_url, create=False).rows() == []


def test_a_dropped_server_connection_costs_a_reconnect_not_a_row(postgres_url):
    import sqlalchemy as sa

    store = ResultStore(postgres_url)
    assert store.write({"run_key": "before"})
    # What a server restart or an idle timeout does to a sweep's pooled connection mid-sweep.
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        ended = conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalars()
        assert any(ended)
    admin.dispose()
    assert store.write({"run_key": "after"})
    assert store.finished_keys() == {"before", "after"}
    store.close()


def test_database_url_passes_urls_and_turns_paths_into_sqlite(tmp_path):
    assert database_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert database_url(tmp_path / "sub" / "r.sqlite").startswith("sqlite:///")
    assert (tmp_path / "sub").is_dir()  # a writer's folder is made
    assert database_url(tmp_path / "other" / "r.sqlite", create=False) and not (tmp_path / "other").exists()


def lm(dim, mixer="attention"):
    return mixerlab.create_model("lm", vocab_size=32, dim=dim, depth=2, mixer=mixer)


def test_costs_scale_with_width_and_state_size_follows_the_mixer():
    small, large = lm(16), lm(32)
    assert count_parameters(large) > count_parameters(small)
    f_small, f_large = flops_per_token(small, 16), flops_per_token(large, 16)
    assert f_small > 0 and 2.5 < f_large / f_small < 5  # matmul FLOPs grow ~ dim^2 (embeddings less)
    task = mixerlab.create_task("mqar", vocab_size=32, seq_len=16, test_seq_lens=[64], num_kv_pairs=[2])
    tokens = task.train_data(0).inputs[:4]
    costs = measure_costs(small, task=task, inputs=tokens, device="cpu")
    assert costs["state_size"] == small.state_size(16)
    assert costs["state_size_eval"] == 4 * costs["state_size"]  # attention's cache grows with T
    assert costs["flops_per_example"] == pytest.approx(16 * costs["flops_per_token"])
    window = lm(16, {"name": "sliding_window", "window": 4})
    assert window.state_size(64) == window.state_size(16)


def test_training_memory_counts_activations_that_grow_with_batch():
    model = lm(16)
    one = training_memory_bytes(model, torch.zeros(1, 16, dtype=torch.long))
    eight = training_memory_bytes(model, torch.zeros(8, 16, dtype=torch.long))
    weights = 4 * sum(p.numel() * 4 for p in model.parameters())
    assert weights < one < eight


def test_costs_of_an_image_model_use_images_and_count_patches():
    task = mixerlab.create_task("digits")
    images = task.train_data(0).inputs[:4]
    assert images.dtype == torch.float32 and images.dim() == 4
    model = mixerlab.create_model("image_classifier", **task.model_io(), dim=16, depth=1, mixing="causal")
    costs = measure_costs(model, task=task, inputs=images, device="cpu")
    tokens = model.stem.num_tokens()  # 16 patches of 2x2 and the class token
    assert tokens == 17 and costs["flops_per_example"] == pytest.approx(tokens * costs["flops_per_token"])
    assert costs["state_size"] == model.state_size(tokens) and costs["peak_memory_mb"] > 0


def old_runs_table(meta):
    """The runs table as stores were written before the grid had axes: fewer columns, bounded text."""
    import sqlalchemy as sa

    text = {n: sa.String(n) for n in (32, 64, 100, 200)}
    return sa.Table(
        "runs",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_key", text[64], nullable=False, unique=True),
        *(sa.Column(name, text[200]) for name in ("sweep", "model", "mixer")),
        sa.Column("task", text[100]),
        *(sa.Column(name, sa.Integer) for name in ("dim", "seed", "steps", "epochs")),
        sa.Column("lr", sa.Float),
        sa.Column("status", text[32]),
        sa.Column("metric_name", text[64]),
        sa.Column("higher_is_better", sa.Boolean),
        *(sa.Column(name, sa.Float) for name in ("metric", "flops_per_token", "tokens_per_s")),
        *(sa.Column(name, sa.Float) for name in ("peak_memory_mb", "train_seconds", "train_cpu_seconds")),
        *(sa.Column(name, sa.BigInteger) for name in ("params", "state_size", "state_size_eval")),
        sa.Column("device", text[100]),
        sa.Column("message", sa.Text),
        sa.Column("created_at", sa.DateTime),
        *(sa.Column(name, sa.JSON) for name in ("config", "slices", "history", "versions")),
    )


def test_a_store_written_before_axes_migrates_without_losing_a_row(store_url):
    import sqlalchemy as sa

    engine = sa.create_engine(database_url(store_url))
    meta = sa.MetaData()
    old = old_runs_table(meta)
    meta.create_all(engine)
    with engine.begin() as conn:
        for i, mixer in enumerate(["attention", "gla"]):
            values = dict(run_key=f"k{i}", sweep="old", task="mqar", mixer=mixer, dim=32, lr=3e-3, seed=i)
            conn.execute(sa.insert(old).values(**values, metric=0.5 + i / 10))
    engine.dispose()
    reader = ResultStore(store_url, create=False)  # a reader migrates too: the report of an old sweep
    rows = reader.rows()
    reader.close()
    assert [r["run_key"] for r in rows] == ["k0", "k1"] and rows[1]["metric"] == pytest.approx(0.6)
    assert rows[1]["axes"] == {"model.mixer": "gla", "model.dim": 32, "train.lr": 3e-3, "train.seed": 1}
    assert rows[0]["kind"] == "next_token"
    store = ResultStore(store_url)
    assert store.write(
        {"run_key": "new", "task": "digits", "kind": "classify", "axes": {"model.mixing": "2d"}}
    )
    # The old bounds are gone: a long label and a 64-bit seed fit where they would not have.
    assert store.write({"run_key": "wide", "mixer": "m" * 500, "seed": 2**40, "status": "s" * 100})
    rows = store.rows()
    assert rows[2]["axes"] == {"model.mixing": "2d"} and len(rows) == 4
    assert rows[3]["mixer"] == "m" * 500 and rows[3]["seed"] == 2**40
    store.close()


def test_a_server_that_does_not_answer_is_a_store_error_without_the_password():
    pytest.importorskip("psycopg")
    with socket.socket() as port:
        port.bind(("127.0.0.1", 0))  # bound, never listening: nothing answers there
        url = f"postgresql://mixer:s3cret@127.0.0.1:{port.getsockname()[1]}/none"
        with pytest.raises(ConfigError, match="cannot connect") as error:
            check_store(url, must_exist=True)
    assert "s3cret" not in str(error.value) and "mixer:***@127.0.0.1" in str(error.value)
