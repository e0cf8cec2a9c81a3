"""The results store: one row per finished run, in SQLite by default or a PostgreSQL server.

A path (``results.sqlite``) means an SQLite file; a URL (``postgresql://user@host/db``) points
at a shared server so several machines can fill one sweep. Each row is written in its own
transaction when its run finishes, so an interrupted sweep keeps every row already written and
never leaves half a row. Rows are keyed by the run's config hash (``run_key``, unique): when two
sweeps finish the same run, the first row stays and the second write is a no-op, so concurrent
writers neither lose nor duplicate a row.

Both databases hold the same values: text columns have no length limit (SQLite ignores one,
PostgreSQL enforces it), the seed is 64-bit, a NaN in a number column is stored as NULL (SQLite's
own rule), and the JSON columns keep NaN and infinities (which PostgreSQL's JSON refuses) as
``{"$float": "NaN"}``, turned back into floats when read. A store written by an older version
gains the newer columns (and, on PostgreSQL, the wider types) when opened; on PostgreSQL under a
lock, so two sweeps opening one store at once do not race to create or migrate it. A bare
``postgresql://`` URL uses psycopg (3) when psycopg2 is not installed.

:func:`check_store` looks at a store before anything uses it (a missing, text, truncated or
corrupt file, an unknown URL scheme, a server that does not answer) and says what is wrong in
one :class:`~mixerlab.errors.ConfigError`; a reader opens with ``create=False`` and creates nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import importlib.util
import math
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


def display_url(store: str | os.PathLike) -> str:
    """``store`` as printed in logs and messages: a server URL's password becomes ``***``."""
    text = str(store)
    if "://" not in text:
        return text
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(text).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return text


_SQLITE_HEADER = b"SQLite format 3\x00"
_STORE_HINT = (
    "a results store (a SQLite file, or a database on a server) is written by `mixerlab compare` "
    "or `mixerlab train`"
)


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
    text = display_url(text)  # an error message must not show a password
    try:
        engine = _create_engine(url)
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


def _create_engine(url: Any):
    """An engine for ``url``; a bare ``postgresql://`` takes psycopg (3) when psycopg2 is not installed."""
    import sqlalchemy as sa

    url = sa.engine.make_url(url)
    if url.drivername == "postgresql":
        has = importlib.util.find_spec
        if has("psycopg2") is None and has("psycopg") is not None:
            url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite":
        return sa.create_engine(url)
    # A sweep holds its engine for hours between writes; a server restart or an idle timeout
    # must cost a reconnect, not the row of the run that just finished.
    return sa.create_engine(url, pool_pre_ping=True)


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


# The key of PostgreSQL's transaction-scoped lock that serialises creating and migrating the runs
# table across processes and machines (any fixed 64-bit number).
_SCHEMA_LOCK = int.from_bytes(b"mixerlab", "big")
# How the JSON columns keep a float that JSON has no literal for (PostgreSQL refuses NaN).
_FLOAT_TAG = "$float"
_NON_FINITE = ("NaN", "Infinity", "-Infinity")


@functools.cache
def _json_type():
    """SQLAlchemy's JSON with non-finite floats stored as ``{"$float": "NaN"}`` and read back as floats."""
    import sqlalchemy as sa

    class FiniteJson(sa.types.TypeDecorator):
        impl = sa.JSON
        cache_ok = True

        def process_bind_param(self, value, dialect):
            return _encode_floats(value)

        def process_result_value(self, value, dialect):
            return _decode_floats(value)

    return FiniteJson()


@functools.cache
def _float_type():
    """SQLAlchemy's Float with NaN stored as NULL everywhere, as SQLite does by itself (no value)."""
    import sqlalchemy as sa

    class Number(sa.types.TypeDecorator):
        impl = sa.Float
        cache_ok = True

        def process_bind_param(self, value, dialect):
            return None if isinstance(value, float) and math.isnan(value) else value

    return Number()


def _encode_floats(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {_FLOAT_TAG: "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, dict):
        return {k: _encode_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_floats(v) for v in value]
    return value


def _decode_floats(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and value.get(_FLOAT_TAG) in _NON_FINITE:
            return float(value[_FLOAT_TAG])
        return {k: _decode_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_floats(v) for v in value]
    return value


def _runs_table(sa, meta):
    json, number = _json_type(), _float_type()
    return sa.Table(
        "runs",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_key", sa.String(64), nullable=False, unique=True),
        sa.Column("sweep", sa.String, index=True),
        sa.Column("task", sa.String, index=True),
        sa.Column("kind", sa.String),
        sa.Column("model", sa.String),
        sa.Column("mixer", sa.String),
        sa.Column("dim", sa.Integer),
        sa.Column("lr", number),
        sa.Column("seed", sa.BigInteger),  # 64-bit: a seed above 2**31 fits on PostgreSQL too
        sa.Column("status", sa.String),
        sa.Column("metric_name", sa.String),
        sa.Column("metric", number, nullable=True),
        sa.Column("higher_is_better", sa.Boolean),
        sa.Column("params", sa.BigInteger),
        sa.Column("flops_per_token", number),
        sa.Column("flops_per_example", number),
        sa.Column("state_size", sa.BigInteger),
        sa.Column("state_size_eval", sa.BigInteger),
        sa.Column("tokens_per_s", number),
        sa.Column("examples_per_s", number),
        sa.Column("peak_memory_mb", number),
        sa.Column("train_seconds", number),
        sa.Column("train_cpu_seconds", number),
        sa.Column("steps", sa.Integer),
        sa.Column("epochs", sa.Integer),
        sa.Column("device", sa.String),
        sa.Column("message", sa.Text),
        sa.Column("created_at", sa.DateTime),
        sa.Column("config", json),
        # Every axis of the sweep with this run's value, {dotted.path: value}: the report groups by them.
        sa.Column("axes", json),
        sa.Column("slices", json),
        sa.Column("history", json),
        sa.Column("versions", json),
    )


class ResultStore:
    """Read and write run results (imports SQLAlchemy only when a store is opened).

    ``create=False`` opens an existing store only (a reader): no folder, file or table is made.
    """

    def __init__(self, store: str | os.PathLike, *, create: bool = True) -> None:
        import sqlalchemy as sa

        self.url = database_url(store, create=create)
        self.engine = _create_engine(self.url)
        self.table = _runs_table(sa, sa.MetaData())
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Released at commit: a second sweep opening the store waits here, then finds it ready.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            if create:
                # IF NOT EXISTS: another process may have created the table since this one looked.
                conn.execute(sa.schema.CreateTable(self.table, if_not_exists=True))
                for index in self.table.indexes:
                    conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
            elif not sa.inspect(conn).has_table("runs"):
                raise ConfigError("store", "store", display_url(store), f"has no runs table; {_STORE_HINT}")
            self._migrate(sa, conn)

    def _migrate(self, sa, conn) -> None:
        """A store written by an older version gains the newer (nullable) columns and wider types.

        SQLite enforces neither a declared length nor an integer width, so only PostgreSQL's
        columns are widened (lengths dropped, integers to 64 bits); the values stay as they are.
        """
        present = {c["name"]: c["type"] for c in sa.inspect(conn).get_columns("runs")}
        for column in self.table.columns:
            kind = column.type.compile(dialect=conn.dialect)
            if column.name not in present:
                _add_column(sa, conn, column.name, kind)
            elif conn.dialect.name == "postgresql" and _narrower(sa, present[column.name], column.type):
                conn.execute(sa.text(f'ALTER TABLE runs ALTER COLUMN "{column.name}" TYPE {kind}'))

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
        if not row.get("run_key"):
            raise ValueError("a result row needs its run_key (the hash of the run's config)")
        values = {k: row.get(k) for k in COLUMNS}
        values["created_at"] = values["created_at"] or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        name = self.engine.dialect.name
        if name in ("postgresql", "sqlite"):
            # Another worker or machine may finish the same run first: its row stays, this one is
            # skipped in the database itself (no error to catch, no aborted transaction).
            dialect = importlib.import_module(f"sqlalchemy.dialects.{name}")
            insert = (
                dialect.insert(self.table).values(**values).on_conflict_do_nothing(index_elements=["run_key"])
            )
            with self.engine.begin() as conn:
                if conn.dialect.insert_returning:  # a skipped insert returns no row
                    return conn.execute(insert.returning(self.table.c.id)).first() is not None
                return conn.execute(insert).rowcount == 1  # SQLite before 3.35
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(self.table).values(**values))
        except sa.exc.IntegrityError:
            return False
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


def _add_column(sa, conn, name: str, kind: str) -> None:
    try:
        conn.execute(sa.text(f'ALTER TABLE runs ADD COLUMN "{name}" {kind}'))
    except sa.exc.OperationalError:
        # SQLite has no lock around this: another process may have added the column meanwhile.
        columns = {c["name"] for c in sa.inspect(conn).get_columns("runs")}
        if conn.dialect.name != "sqlite" or name not in columns:
            raise


def _narrower(sa, present, declared) -> bool:
    """Whether a stored column type holds less than the declared one (a length, a 32-bit integer)."""
    if isinstance(declared, sa.String) and declared.length is None:
        return getattr(present, "length", None) is not None
    if isinstance(declared, sa.BigInteger):
        return isinstance(present, sa.Integer) and not isinstance(present, sa.BigInteger)
    return False
