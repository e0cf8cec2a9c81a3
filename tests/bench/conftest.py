"""A throw-away PostgreSQL server for the store tests, and a store address per backend.

``store_url`` gives each test a fresh store, once as an SQLite file and once as a database on a
real PostgreSQL server. The server is started once per test session (per xdist worker) from
PostgreSQL's own binaries, ``initdb`` and ``pg_ctl`` found on PATH or in
``/usr/lib/postgresql/<version>/bin`` (where Debian's ``postgresql`` package puts them), in a
temporary folder on a free port, and removed at the end. PostgreSQL refuses to run as root, so as
root the cluster belongs to the ``postgres`` user (or ``nobody``). ``MIXERLAB_TEST_POSTGRES_URL``
(a role that may create databases) uses a running server instead. Without a server binary or
without psycopg the PostgreSQL cases are skipped with the reason; a server that is there but does
not start fails the tests with its log.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

URL_VARIABLE = "MIXERLAB_TEST_POSTGRES_URL"
_INSTALL_HINT = (
    "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin; "
    f"install Debian's postgresql package or set {URL_VARIABLE}"
)


def postgres_bin_dir() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: PATH first, then the newest Debian one."""
    candidates = []
    if shutil.which("pg_ctl"):
        candidates.append(Path(shutil.which("pg_ctl")).resolve().parent)
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(
        versions, key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.name)], reverse=True
    )
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _server_user() -> pwd.struct_passwd | None:
    """Who owns the cluster: this user, or an unprivileged one when running as root (None: nobody fits)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """One cluster in a temporary folder, started with ``pg_ctl`` and stopped by :meth:`stop`."""

    def __init__(self, bin_dir: Path, user: pwd.struct_passwd) -> None:
        self.bin_dir, self.user = bin_dir, user
        # Not under pytest's tmp_path: its folders are private to this user, and as root the server
        # runs as another one.
        self.root = Path(tempfile.mkdtemp(prefix="mixerlab-pg-"))
        self.data, self.log = self.root / "data", self.root / "server.log"
        if os.geteuid() == 0:
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.port = 0

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        switch = {}
        if os.geteuid() == 0:
            switch = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C"},
            **switch,
        )

    def start(self) -> str:
        """Create the cluster and start the server; returns the admin URL (fails with the server's log)."""
        made = self._run(
            "initdb", "-D", str(self.data), "-U", "mixerlab", "-A", "trust", "-E", "UTF8", "--no-sync"
        )
        if made.returncode != 0:
            pytest.fail(f"initdb failed:\n{made.stdout}\n{made.stderr}")
        for _ in range(3):  # a free port can be taken by someone else before the server binds it
            self.port = _free_port()
            options = (
                f"-p {self.port} -k '{self.root}' -c listen_addresses=127.0.0.1 -c shared_buffers=16MB "
                # A throw-away cluster: nothing to keep after a crash, so no waiting for the disk.
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            started = self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options, "start"
            )
            if started.returncode == 0:
                return f"postgresql+psycopg://mixerlab@127.0.0.1:{self.port}/postgres"
        log = self.log.read_text() if self.log.exists() else ""
        pytest.fail(f"the PostgreSQL server did not start:\n{started.stdout}\n{started.stderr}\n{log}")

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server whose role may create databases (skips the test without one)."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')")
    if os.environ.get(URL_VARIABLE):
        import sqlalchemy as sa

        url = sa.engine.make_url(os.environ[URL_VARIABLE])
        if url.drivername == "postgresql":  # the driver the tests installed, not psycopg2
            url = url.set(drivername="postgresql+psycopg")
        yield url.render_as_string(hide_password=False)
        return
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip(_INSTALL_HINT)
    user = _server_user()
    if user is None:
        pytest.skip("running as root and there is no postgres or nobody user to run the server as")
    server = LocalPostgres(bin_dir, user)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A new, empty database on the session's server for one test, dropped afterwards."""
    import sqlalchemy as sa

    name = f"mixerlab_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.engine.make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:  # FORCE: a store a failed test left open must not block the drop
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """A fresh store's address: an SQLite file, then a database on a real PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "results.sqlite")
    return request.getfixturevalue("postgres_url")
