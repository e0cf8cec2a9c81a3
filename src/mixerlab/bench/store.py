"""The results store: one row per finished run, in SQLite by default or any SQLAlchemy database URL.

A path (``results.sqlite``) means an SQLite file; a URL (``postgresql://user@host/db``) points
at a shared server so several machines can fill one sweep. Each row is written in its own
transaction when its run finishes, so an interrupted sweep keeps every row already written and
never leaves half a row. Rows are keyed by the run's config hash (``run_key``), which is how a
re-run of a sweep knows what is already done.

:func:`check_store` looks at a store before anything uses it (a missing, text, truncated or
corrupt file, an unknown URL scheme, a server that does not answer) and says what is wrong in
one :class:`~mixerlab.errors.ConfigError`; a reader opens with ``create=False`` and creates nothing.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from mixerlab.errors import ConfigError

COLUMNS = (
    "run_key",
    "sweep",
    "task",
    "kind",
    "model",
    "mixer",
    "dim",
    "lr",
    "seed",
    "status",
    "metric_name",
    "metric",
    "higher_is_better",
    "params",
    "flops_per_token",
    "flops_per_example",
    "state_size",
    "state_size_eval",
    "tokens_per_s",
    "examples_per_s",
    "peak_memory_mb",
    "train_seconds",
    "train_cpu_seconds",
    "steps",
    "epochs",
    "device",
    "message",
    "created_at",
    "config",
    "axes",
    "slices",
    "history",
    "versions",
)


def database_url(store: str | os.PathLike, *, create: bool = True) -> str:
    """A SQLAlchemy URL for ``store``: URLs pass through, paths become ``sqlite:///<path>``.

    ``create`` makes the file's folder (a writer's store); a reader's creates nothing.
    """
    text = str(store)
    if "://" in text:
        return text
    path = Path(text).expanduser().resolve()
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


_SQLITE_HEADER = b"SQLite format 3\x00"
_STORE_HINT = "a results store is a SQLite file written by `mixerlab compare` or `mixerlab train`"


def check_store(store: str | os.PathLike, *, must_exist: bool, owner: str = "store") -> None:
    """Raise :class:`ConfigError` (field ``store``) unless ``store`` can be used, creating nothing.

    A path must be a readable, intact SQLite file (or, unless ``must_exist``, not exist yet); a
    URL must name an installed database driver and a server that answers.
    """
    text = str(store)
    if "://" not in text:
        _check_sqlite_path(Path(text).expanduser(), text, must_exist, owner)
        return
    import sqlalchemy as sa

    try:
        url = sa.engine.make_url(text)
    except sa.exc.ArgumentError:
        allowed = "expected a SQLite file path or a database URL such as postgresql://user@host/db"
        raise ConfigError(owner, "store", text, allowed) from None
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            _check_sqlite_path(Path(url.database).expanduser(), text, must_exist, owner)
        return
    try:
        engine = sa.create_engine(url)
    except sa.exc.NoSuchModuleError:
        raise ConfigError(owner, "store", text, "unknown database kind; use sqlite or postgresql") from None
    except ImportError as err:
        raise ConfigError(owner, "store", text, f"its database driver is not installed ({err})") from None
    try:
        with engine.connect():
            has_runs = sa.inspect(engine).has_table("runs")
    except sa.exc.SQLAlchemyError as err:
        first = str(getattr(err, "orig", err)).strip().splitlines()[0]
        raise ConfigError(owner, "store", text, f"cannot connect: {first}") from None
    finally:
        engine.dispose()
    if must_exist and not has_runs:
        raise ConfigError(owner, "store", text, f"the database has no runs table; {_STORE_HINT}")


def _check_sqlite_path(path: Path, text: str, must_exist: bool, owner: str) -> None:
    if not path.exists():
        if must_exist:
            raise ConfigError(owner, "store", text, f"no such file; {_STORE_HINT}")
        return
    if path.is_dir():
        raise ConfigError(
            owner, "store", text, "is a folder; expected a SQLite file, e.g. <folder>/results.sqlite"
        )
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_HEADER))
    except OSError as err:
        raise ConfigError(owner, "store", text, f"cannot be read ({err.strerror})") from None
    if not head:
        if must_exist:
            raise ConfigError(owner, "store", text, f"is an empty file; {_STORE_HINT}")
        return  # SQLite takes an empty file as a new database
    if head != _SQLITE_HEADER:
        raise ConfigError(owner, "store", text, f"is not a SQLite database; {_STORE_HINT}")
    import sqlite3

    try:
        # Read-only: looking at a damaged file must not change it.
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            problems = [r[0] for r in con.execute("PRAGMA quick_check")]
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as err:
        raise ConfigError(owner, "store", text, f"is damaged or truncated ({err})") from None
    if problems != ["ok"]:
        raise ConfigError(owner, "store", text, f"is damaged or truncated ({problems[0]})")
    if "runs" not in tables and (must_exist or tables):
        raise ConfigError(owner, "store", text, f"is a SQLite database without a runs table; {_STORE_HINT}")


class ResultStore:
    """Read and write run results (imports SQLAlchemy only when a store is opened).

    ``create=False`` opens an existing store only (a reader): no folder, file or table is made.
    """

    def __init__(self, store: str | os.PathLike, *, create: bool = True) -> None:
        import sqlalchemy as sa

        self.url = database_url(store, create=create)
        self.engine = sa.create_engine(self.url)
        meta = sa.MetaData()
        self.table = sa.Table(
            "runs",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("run_key", sa.String(64), nullable=False, unique=True),
            sa.Column("sweep", sa.String(200), index=True),
            sa.Column("task", sa.String(100), index=True),
            sa.Column("kind", sa.String(32)),
            sa.Column("model", sa.String(200)),
            sa.Column("mixer", sa.String(200)),
            sa.Column("dim", sa.Integer),
            sa.Column("lr", sa.Float),
            sa.Column("seed", sa.Integer),
            sa.Column("status", sa.String(32)),
            sa.Column("metric_name", sa.String(64)),
            sa.Column("metric", sa.Float, nullable=True),
            sa.Column("higher_is_better", sa.Boolean),
            sa.Column("params", sa.BigInteger),
            sa.Column("flops_per_token", sa.Float),
            sa.Column("flops_per_example", sa.Float),
            sa.Column("state_size", sa.BigInteger),
            sa.Column("state_size_eval", sa.BigInteger),
            sa.Column("tokens_per_s", sa.Float),
            sa.Column("examples_per_s", sa.Float),
            sa.Column("peak_memory_mb", sa.Float),
            sa.Column("train_seconds", sa.Float),
            sa.Column("train_cpu_seconds", sa.Float),
            sa.Column("steps", sa.Integer),
            sa.Column("epochs", sa.Integer),
            sa.Column("device", sa.String(100)),
            sa.Column("message", sa.Text),
            sa.Column("created_at", sa.DateTime),
            sa.Column("config", sa.JSON),
            # Every axis of the sweep with this run's value, {dotted.path: value}: the report groups by them.
            sa.Column("axes", sa.JSON),
            sa.Column("slices", sa.JSON),
            sa.Column("history", sa.JSON),
            sa.Column("versions", sa.JSON),
        )
        if not create:
            if not sa.inspect(self.engine).has_table("runs"):
                raise ConfigError("store", "store", str(store), f"has no runs table; {_STORE_HINT}")
            self._add_missing_columns(sa)
            return
        try:
            meta.create_all(self.engine)
        except sa.exc.DBAPIError:
            # Another process (a second sweep, a reader) created the table between check and create.
            if not sa.inspect(self.engine).has_table("runs"):
                raise
        self._add_missing_columns(sa)

    def _add_missing_columns(self, sa) -> None:
        """Additive migration: a store written by an older version gains the newer (nullable) columns."""
        present = {c["name"] for c in sa.inspect(self.engine).get_columns("runs")}
        missing = [c for c in self.table.columns if c.name not in present]
        if not missing:
            return
        with self.engine.begin() as conn:
            for column in missing:
                kind = column.type.compile(dialect=self.engine.dialect)
                conn.execute(sa.text(f'ALTER TABLE runs ADD COLUMN "{column.name}" {kind}'))

    def finished_keys(self) -> set[str]:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return {row[0] for row in conn.execute(sa.select(self.table.c.run_key))}

    def write(self, row: dict[str, Any]) -> bool:
        """Insert one result in one transaction; False if a row with its ``run_key`` already exists."""
        import sqlalchemy as sa

        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown result columns {sorted(unknown)}")
        values = {k: row.get(k) for k in COLUMNS}
        values["created_at"] = values["created_at"] or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(self.table).values(**values))
        except sa.exc.IntegrityError:
            return False  # another worker or machine finished the same run first
        return True

    def rows(self, *, sweep: str | None = None, task: str | None = None) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        query = sa.select(self.table).order_by(self.table.c.id)
        if sweep is not None:
            query = query.where(self.table.c.sweep == sweep)
        if task is not None:
            query = query.where(self.table.c.task == task)
        with self.engine.connect() as conn:
            return [_with_axes(dict(r._mapping)) for r in conn.execute(query)]

    def get(self, run_key: str) -> dict[str, Any] | None:
        """The row of one run, or None."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            row = conn.execute(sa.select(self.table).where(self.table.c.run_key == run_key)).first()
        return None if row is None else _with_axes(dict(row._mapping))

    def distinct(self, column: str) -> list[Any]:
        """The values of one column across all rows, sorted (to say what a filter could match)."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            values = conn.execute(sa.select(self.table.c[column]).distinct()).scalars()
            return sorted(v for v in values if v is not None)

    def close(self) -> None:
        self.engine.dispose()


def _with_axes(row: dict[str, Any]) -> dict[str, Any]:
    """A row written before sweeps had axes gets them from its key columns (mixer, width, lr, seed)."""
    if not row.get("axes"):
        row["axes"] = {
            "model.mixer": row.get("mixer"),
            "model.dim": row.get("dim"),
            "train.lr": row.get("lr"),
            "train.seed": row.get("seed"),
        }
    if not row.get("kind"):
        row["kind"] = "next_token"
    return row
