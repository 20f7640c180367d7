"""A throwaway PostgreSQL cluster for the test session: real Postgres, never a mock.

Started once, on a free loopback port, in a temporary directory that is removed at the end.
Durability is off (fsync, synchronous_commit, full_page_writes): a crash of the test machine may
lose the cluster, which is thrown away anyway, and every commit costs no disk flush.
Each test gets a database of its own (`database`), created empty from template0 and dropped
after it, so tests cannot see each other's rows.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

# For a test of what only SQLite has (its file, pragmas, WAL): its databases are SQLite's.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
# And of what only Postgres has.
postgres_only = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

MISSING = (
    "the PostgreSQL server binaries (initdb, pg_ctl) are not installed: run `make system-deps` "
    "(installs the Debian package postgresql) and try again"
)


def _binaries() -> Path:
    """Where initdb and pg_ctl are: on PATH, or Debian's versioned directory (newest first)."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if not found:
        raise RuntimeError(MISSING)
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One cluster: `start`, `database()` per test, `stop`."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        """`settings`: server options over the test defaults (benchmarks turn durability on)."""
        self.bin = _binaries()
        self.settings = settings or {}
        self.root = Path(tempfile.mkdtemp(prefix="intmon-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self._names = itertools.count()
        self._admin: psycopg.Connection[tuple[object, ...]] | None = None
        # Postgres refuses to run as root: then the cluster belongs to the postgres user.
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [*self._as, *args], capture_output=True, text=True, check=False, cwd=self.root
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}):\n{result.stderr}")

    def start(self) -> None:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres",
            "--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        self.options = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.root),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            # Every test's engines hold a few pooled connections until it ends.
            "max_connections": "200",
            **self.settings,
        }
        # A port taken between picking and binding is unlikely, but then pick another.
        for attempt in range(3):
            self.port = _free_port()
            try:
                self.pg_ctl("start")
                break
            except RuntimeError:
                if attempt == 2:
                    log = (self.root / "server.log").read_text(errors="replace")
                    raise RuntimeError(f"postgres did not start:\n{log}") from None
        self._connect_admin()

    def _connect_admin(self) -> None:
        self._admin = psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        )

    def pg_ctl(self, action: str) -> None:
        """`start`, `stop` or `restart` the server on its port; returns once it is done (-w),
        so a benchmark or a test can take the database away and give it back."""
        flags = " ".join(f"-c {k}={v}" for k, v in self.options.items())
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30", "-m", "fast",
            "-l", str(self.root / "server.log"), "-o", f"-p {self.port} {flags}", action,
        )  # fmt: skip
        if action != "stop" and self._admin is not None:
            self._admin.close()  # the server it spoke to is gone
            self._connect_admin()

    def url(self, database: str) -> str:
        # The plain scheme, as users write it: intmon normalises it to psycopg 3.
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A new, empty database; yields its URL and drops it (and its connections) after."""
        assert self._admin is not None
        name = f"test_{next(self._names)}"
        self._admin.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        try:
            yield self.url(name)
        finally:
            # FORCE: engines a test left open must not keep the database (and connections).
            self._admin.execute(f"DROP DATABASE {name} WITH (FORCE)")

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
