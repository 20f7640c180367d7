"""The two databases intmon runs on, SQLite and Postgres: what their URLs mean, and the
statements whose SQL differs between them (insert-or-update, insert-if-new, the clock, the
notification to other processes).

Everything else the store does is standard SQL that both run as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    URL,
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Table,
    create_engine,
    make_url,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from monitor.core.errors import StorageError
from monitor.core.redact import redact

# psycopg 3, whichever SQLAlchemy is installed: 2.0 would pick psycopg2 for a plain
# `postgresql://`, 2.1 picks psycopg 3; spelling the driver out makes both agree.
POSTGRES_DRIVER = "postgresql+psycopg"
POSTGRES_SCHEMES = ("postgresql", "postgres")
INSTALL_POSTGRES = "pip install 'integration-monitor[postgres]'"

# A whole number that may pass 2**31 (unix seconds after 2038, counts of synced rows): 64 bits
# on Postgres, whose INTEGER has 32; SQLite's INTEGER has 64 already and keeps its DDL.
BIG_INTEGER = BigInteger().with_variant(Integer(), "sqlite")


def database_url(value: str) -> str:
    """`monitor.database` as a SQLAlchemy URL: a file path is an SQLite file, and a Postgres
    URL without a driver gets psycopg 3 (`postgres://`, as some hosts hand it out, too)."""
    if "://" not in value:
        return f"sqlite:///{value}"
    scheme, rest = value.split("://", 1)
    if scheme in POSTGRES_SCHEMES:
        return f"{POSTGRES_DRIVER}://{rest}"
    return value


def engine_url(value: str) -> URL:
    """The parsed URL of `monitor.database`, checked without connecting: a StorageError (with
    the password masked) for a URL SQLAlchemy cannot use or whose driver is not installed."""
    try:
        url = make_url(database_url(value))
        # Loads the dialect and its driver and checks the URL's parts; connects to nothing.
        create_engine(url).dispose()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        # SQLAlchemy may quote the URL, which may carry a password; its first line says it.
        problem = redact(str(exc).splitlines()[0], ())
        raise StorageError(f"not a usable SQLAlchemy URL: {problem}") from None
    except ImportError as exc:
        if url.drivername == POSTGRES_DRIVER:
            raise StorageError(f"Postgres needs the psycopg driver: {INSTALL_POSTGRES}") from None
        raise StorageError(f"its database driver is not installed ({exc})") from None
    return url


def shown(url: URL | str) -> str:
    """A database URL fit for logs and messages: its password masked."""
    parsed = url if isinstance(url, URL) else make_url(database_url(url))
    return parsed.render_as_string(hide_password=True)


def is_postgres(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"


def upsert(
    connection: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str] = (),
    only: Sequence[str] = (),
) -> None:
    """Insert `rows`, or update the row already there with the same key (default: the primary
    key): one statement, atomic on both databases, so two writers never collide on the key.
    An existing row gets every other column of the new one, or only the columns `only` names
    (the others keep what they hold)."""
    if not rows:
        return
    key = list(keys) or [column.name for column in table.primary_key]
    statement = _insert(connection)(table)
    columns = list(only) or [c.name for c in table.columns if c.name not in key]
    changed = {name: statement.excluded[name] for name in columns}
    connection.execute(statement.on_conflict_do_update(index_elements=key, set_=changed), rows)


def _insert(connection: Connection | Engine) -> Any:
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise StorageError(f"intmon stores its history in SQLite or Postgres, not {dialect}")


def insert_new(
    connection: Connection | Engine,
    table: Table,
    keys: Sequence[str],
    where: ColumnElement[bool] | None = None,
) -> Any:
    """`INSERT … ON CONFLICT (keys) DO NOTHING` into `table`, on the unique index over `keys`
    (partial: `where`): rows whose key is stored already are left out, atomically, so of two
    writers racing for one key exactly one gets it. Other unique keys still raise."""
    return _insert(connection)(table).on_conflict_do_nothing(index_elements=keys, index_where=where)


def notify(connection: Connection, channel: str, payload: str) -> None:
    """Postgres NOTIFY on `channel`, sent when the transaction commits (never for one rolled
    back), to every connection LISTENing (`storage.listener`). Nothing on SQLite, which has
    one process and no one to tell."""
    if is_postgres(connection):
        connection.execute(text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})


def database_now(connection: Connection) -> float:
    """The database server's clock, unix seconds: the one clock replicas on different hosts
    agree on (their own may be skewed)."""
    if is_postgres(connection):
        query = "SELECT extract(epoch FROM clock_timestamp())"
    else:
        query = "SELECT (julianday('now') - 2440587.5) * 86400.0"
    return float(connection.execute(text(query)).scalar_one())
