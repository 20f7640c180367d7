"""Upgrades of databases written by older intmon versions, run by Store.open().

Version 3 changed the layout of the two big tables (check names interned, runs clustered by
check and time), so its upgrade copies every row: into new tables beside the old ones, which
are dropped and replaced in the same transaction. A failure anywhere leaves the old database
exactly as it was. Versions 4 and 5 only add a column (runs.request_id, alert_states.cause),
which costs no copy; an upgrade from 1 or 2 gets the first with the copy. Version 6 only adds
a table (shapes), which `Database.open` creates after the upgrade. Version 7 adds runs.slot
with its partial unique index (empty until replicas share the database: no copy, no scan
beyond the index build) and the cluster tables, created on open.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import Connection, MetaData, Table, inspect, text

from monitor.storage.schema import SCHEMA_VERSION, CheckRow, StoredRollup, StoredRun

log = logging.getLogger(__name__)

# Runs are copied this many checks at a time, with a progress line after each chunk.
CHECKS_PER_CHUNK = 100


def legacy_version(connection: Connection) -> int | None:
    """The schema version the database says it has; None for an empty database."""
    if not inspect(connection).has_table("meta"):
        return None
    value = connection.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar()
    return None if value is None else int(value)


def upgrade_legacy(connection: Connection, version: int) -> None:
    """Bring an older database to SCHEMA_VERSION, inside the caller's transaction."""
    # First a write: Python's sqlite3 only opens the transaction at a DML statement, and the
    # DDL below must be inside it, or a failed copy would leave half a schema behind.
    connection.execute(
        text("UPDATE meta SET value = :v WHERE key = 'schema_version'"), {"v": str(SCHEMA_VERSION)}
    )
    tables = inspect(connection)
    if tables.has_table("alert_states"):
        alert_columns = {column["name"] for column in tables.get_columns("alert_states")}
        if "cause" not in alert_columns:
            # NULL: an alert that fired before routing by cause has none, like a sunset alert.
            connection.execute(text("ALTER TABLE alert_states ADD COLUMN cause VARCHAR"))
    if not tables.has_table("runs"):
        return  # nothing stored yet (create_all makes the tables)
    columns = {column["name"] for column in tables.get_columns("runs")}
    if "check" in columns:
        _relayout(connection, version)  # the copy makes the runs table as it is today
    else:
        if "request_id" not in columns:
            connection.execute(text("ALTER TABLE runs ADD COLUMN request_id VARCHAR"))
        if "slot" not in columns:
            connection.execute(text("ALTER TABLE runs ADD COLUMN slot BIGINT"))
            connection.execute(
                text(
                    "CREATE UNIQUE INDEX ux_runs_slot ON runs (check_id, slot) "
                    "WHERE slot IS NOT NULL"
                )
            )


def _relayout(connection: Connection, version: int) -> None:
    """Version 1 or 2 to today's layout: every run and rollup copied (see the module doc)."""
    tables = inspect(connection)
    has_rollups = tables.has_table("rollups")
    started = time.monotonic()
    CheckRow.__table__.create(connection, checkfirst=True)  # type: ignore[attr-defined]
    names = ['SELECT DISTINCT "check" FROM runs']
    if has_rollups:
        names.append('SELECT DISTINCT "check" FROM rollups')
    connection.execute(
        text(f"INSERT INTO checks (name) SELECT * FROM ({' UNION '.join(names)}) n ORDER BY 1")
    )
    ids = [int(row[0]) for row in connection.execute(text("SELECT id FROM checks ORDER BY id"))]
    new_runs = _beside(StoredRun.__table__, "runs_v3")  # type: ignore[attr-defined]
    new_runs.create(connection)
    copied = 0
    for start in range(0, len(ids), CHECKS_PER_CHUNK):
        chunk = ids[start : start + CHECKS_PER_CHUNK]
        copied += _copy_runs(connection, chunk[0], chunk[-1])
        log.info(
            "upgrading the database: runs of %d/%d checks copied (%d rows, %.0f s)",
            start + len(chunk), len(ids), copied, time.monotonic() - started,
        )  # fmt: skip
    connection.execute(text("DROP TABLE runs"))
    connection.execute(text("ALTER TABLE runs_v3 RENAME TO runs"))
    if has_rollups:
        new_rollups = _beside(StoredRollup.__table__, "rollups_v3")  # type: ignore[attr-defined]
        new_rollups.create(connection)
        connection.execute(
            text(
                """INSERT INTO rollups_v3 (check_id, hour, count, failures, rate_limited, timed,
                    p50, p95, p99, p95_ok)
                SELECT c.id, r.hour, r.count, r.failures, r.rate_limited, r.timed,
                    r.p50, r.p95, r.p99, r.p95_ok
                FROM rollups r JOIN checks c ON c.name = r."check" ORDER BY c.id, r.hour"""
            )
        )
        connection.execute(text("DROP TABLE rollups"))
        connection.execute(text("ALTER TABLE rollups_v3 RENAME TO rollups"))
    log.info(
        "database upgraded from version %d: %d runs of %d checks in %.0f s",
        version, copied, len(ids), time.monotonic() - started,
    )  # fmt: skip


def _beside(table: Table, name: str) -> Table:
    return table.to_metadata(MetaData(), name=name)


def _copy_runs(connection: Connection, first: int, last: int) -> int:
    """Copy the runs of checks with ids first..last, in key order (so pages fill up)."""
    # Runs of one check at the same ts could exist (nothing forbade them): numbered by `seq`.
    # Reasons and signals that say nothing new become NULL, as RunRecord.as_row stores them.
    result = connection.execute(
        text(
            """INSERT INTO runs_v3 (check_id, ts, seq, ok, error_class, status, latency,
                reason, signals)
            SELECT c.id, r.ts, row_number() OVER (PARTITION BY c.id, r.ts ORDER BY r.id) - 1,
                r.ok, r.error_class, r.status, r.latency,
                CASE WHEN r.status IS NOT NULL AND r.reason = 'HTTP ' || r.status
                    THEN NULL ELSE r.reason END,
                CASE WHEN r.signals = '{}' THEN NULL ELSE r.signals END
            FROM checks c JOIN runs r ON r."check" = c.name
            WHERE c.id BETWEEN :first AND :last
            ORDER BY c.id, r.ts, r.id"""
        ),
        {"first": first, "last": last},
    )
    return int(result.rowcount)
