"""The database itself, SQLite file or Postgres: its engine (and SQLite's pragmas), the schema
check or upgrade on open, its size, and SQLite's incremental vacuum."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, event, insert, inspect, text
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import SQLModel, create_engine

from monitor.storage import heartbeats as _heartbeat_table  # noqa: F401 (creates its table)
from monitor.storage import pauses as _pause_table  # noqa: F401 (creates its table)
from monitor.storage import shapes as _shape_table  # noqa: F401 (creates its table)
from monitor.storage.backend import engine_url
from monitor.storage.migrate import legacy_version, upgrade_legacy
from monitor.storage.schema import SCHEMA_VERSION, MetaRow, SchemaError

log = logging.getLogger(__name__)

# What readers of the history use: a read-only open requires them all.
READ_TABLES = {"runs", "checks", "meta", "deprecations", "rollups", "heartbeats", "shapes"}

# An existing database without auto_vacuum is switched (one VACUUM, a full copy) on open only
# up to this size; a bigger one keeps working, it just never gives freed pages back to the OS.
VACUUM_ON_UPGRADE_MAX_BYTES = 64 * 1024 * 1024

# The Postgres advisory lock held while a process creates or upgrades the schema, so processes
# starting together on one database do it one after the other (any constant: intmon's own).
SCHEMA_LOCK = 0x696E746D6F6E  # "intmon"


def _sqlite_pragmas(busy_timeout: float, read_only: bool) -> Any:
    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        if not read_only:
            # Only takes effect on a brand-new file, and only before anything else writes to
            # it (switching to WAL already does), so it comes first. On an existing file it is
            # a no-op.
            cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
            # WAL lets the status API read while the writer writes; NORMAL is durable across a
            # crash of the process (only a power loss can lose the last commits).
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    return on_connect


def _sqlite_file(url: URL) -> Path | None:
    """The file of an SQLite URL; None for an in-memory database or one given as a URI."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _read_only(url: URL, path: Path) -> URL:
    """The same file opened with mode=ro: SQLite itself refuses every write, and never
    creates a missing file."""
    query = {**url.query, "mode": "ro", "uri": "true"}
    return url.set(database=path.absolute().as_uri(), query=query)


CONNECTION_TIMEOUTS = {"connect_timeout": "10", "tcp_user_timeout": "30000"}


def _postgres_options(url: URL, busy_timeout: float, read_only: bool) -> URL:
    """Session settings through libpq's `options` (kept if the URL has its own): a statement
    waits at most `busy_timeout` for a lock, as SQLite's busy timeout, and a read-only open has
    every transaction read-only, enforced by the server."""
    given = url.query.get("options", ())
    options = [given] if isinstance(given, str) else list(given)
    options.append(f"-c lock_timeout={int(busy_timeout * 1000)}")
    if read_only:
        options.append("-c default_transaction_read_only=on")
    # A server out of reach (not refusing: gone from the network) fails a connection attempt
    # after 10 s and a request it never acknowledges after 30 s, instead of the system's
    # minutes, so a replica notices the outage in time (monitor.cluster.replica).
    unset = {k: v for k, v in CONNECTION_TIMEOUTS.items() if k not in url.query}
    return url.update_query_dict({"options": " ".join(options), **unset})


def _refuse_newer(version: int | None) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise SchemaError(
            f"database schema version {version} is newer than this intmon "
            f"understands ({SCHEMA_VERSION}); upgrade intmon"
        )


class Database:
    """`read_only`: for readers in another process (`intmon status`): `open` creates, upgrades
    and vacuums nothing, and an SQLite file is opened so that nothing can write to it."""

    def __init__(self, url: str, busy_timeout: float = 5.0, read_only: bool = False) -> None:
        self.url = url
        self.read_only = read_only
        parsed = engine_url(url)
        self.sqlite = parsed.get_backend_name() == "sqlite"
        self.path = _sqlite_file(parsed) if self.sqlite else None
        if self.sqlite:
            if read_only and self.path is not None:
                parsed = _read_only(parsed, self.path)
            self.engine: Engine = create_engine(parsed)
            event.listen(self.engine, "connect", _sqlite_pragmas(busy_timeout, read_only))
        else:
            parsed = _postgres_options(parsed, busy_timeout, read_only)
            # A server restart leaves the pool's connections dead: test each before use, so
            # the first write after a restart succeeds instead of failing once more.
            self.engine = create_engine(parsed, pool_pre_ping=True)

    def open(self) -> None:
        """Create the schema if needed, upgrade an older one, and check its version marker.

        Read-only: only check that the database is there and of this intmon's schema.
        """
        if self.read_only:
            self._check_readable()
            return
        # One transaction (DDL is transactional in both), under a lock on Postgres: processes
        # starting together on one database never upgrade twice nor see half a schema.
        with self.engine.begin() as connection:
            if not self.sqlite:
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK})
            had_runs = inspect(connection).has_table("runs")
            self._upgrade(connection)
        if self.sqlite and had_runs:
            self._enable_incremental_vacuum()

    def _upgrade(self, connection: Connection) -> None:
        version = legacy_version(connection)
        _refuse_newer(version)
        if version is not None and version < SCHEMA_VERSION:
            upgrade_legacy(connection, version)
            log.info("database schema upgraded from %s to %s", version, SCHEMA_VERSION)
        SQLModel.metadata.create_all(connection)
        if version is None:
            row = {"key": "schema_version", "value": str(SCHEMA_VERSION)}
            connection.execute(insert(MetaRow.__table__).values(**row))  # type: ignore[attr-defined]

    def _check_readable(self) -> None:
        if self.path is not None and not self.path.exists():
            raise SchemaError("no such file (`intmon run` creates it)")
        with self.engine.connect() as connection:
            version = legacy_version(connection)
            missing = sorted(READ_TABLES - set(inspect(connection).get_table_names()))
        _refuse_newer(version)
        if version is None:
            raise SchemaError("not an intmon database (it has no schema version)")
        if version < SCHEMA_VERSION:
            problem = f"database schema version {version} is older than this intmon's"
            raise SchemaError(f"{problem} ({SCHEMA_VERSION}); run `intmon run` once to upgrade it")
        if missing:
            problem = f"database has no table {', '.join(missing)}"
            raise SchemaError(f"{problem}; run `intmon run` once to add it")

    def _enable_incremental_vacuum(self) -> None:
        """A database created before auto_vacuum was set needs one VACUUM to switch."""
        with self.engine.connect() as connection:
            if connection.exec_driver_sql("PRAGMA auto_vacuum").scalar() != 0:
                return
            if self.size_bytes() > VACUUM_ON_UPGRADE_MAX_BYTES:
                log.warning(
                    "database %s has no incremental vacuum; pruned space is reused but the file "
                    "will not shrink. To switch, stop intmon and run: sqlite3 FILE "
                    "'PRAGMA auto_vacuum=INCREMENTAL; VACUUM;'",
                    self.url,
                )
                return
            connection.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
            connection.exec_driver_sql("VACUUM")

    def incremental_vacuum(self, pages: int) -> int:
        """Give up to `pages` free pages back to the OS; returns the free pages left.

        SQLite only: Postgres's autovacuum makes the space of deleted rows reusable itself."""
        if not self.sqlite:
            return 0
        with self.engine.begin() as connection:
            free = int(connection.exec_driver_sql("PRAGMA freelist_count").scalar() or 0)
            if free and connection.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2:
                # Each step of the pragma frees one page, and Python's sqlite3 steps a
                # statement without result columns exactly once: so, one execute per page.
                for _ in range(min(pages, free)):
                    connection.exec_driver_sql("PRAGMA incremental_vacuum(1)")
                free = int(connection.exec_driver_sql("PRAGMA freelist_count").scalar() or 0)
            return free

    def size_bytes(self) -> int:
        """SQLite: pages in use and free, times page size: the main file's size, WAL excluded.
        Postgres: the database's size on disk, as the server counts it."""
        with self.engine.connect() as connection:
            if not self.sqlite:
                query = "SELECT pg_database_size(current_database())"
                return int(connection.exec_driver_sql(query).scalar() or 0)
            pages = connection.exec_driver_sql("PRAGMA page_count").scalar() or 0
            size = connection.exec_driver_sql("PRAGMA page_size").scalar() or 0
            return int(pages) * int(size)

    def close(self) -> None:
        self.engine.dispose()
