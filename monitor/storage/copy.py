"""`intmon db copy`: every table of one intmon database into another, typically an SQLite
file's history into Postgres.

The target is created or upgraded to this intmon's schema first; the copy is then one
transaction on the target, so a failure leaves it as it was. Rows keep their ids, and Postgres
sequences are moved past them, so new rows never collide with copied ones. Each table's row
count is compared at the end, inside that transaction: a mismatch commits nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Table, func, insert, inspect, select, text
from sqlmodel import SQLModel

from monitor.core.errors import StorageError
from monitor.storage.backend import is_postgres, shown
from monitor.storage.database import Database


@dataclass
class CopyReport:
    source: str  # URLs as shown: passwords masked
    target: str
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows copied, in copy order
    left_out: list[str] = field(default_factory=list)  # source tables this intmon does not know
    seconds: float = 0.0


def copy_database(
    source_url: str,
    target_url: str,
    force: bool = False,
    batch: int = 5000,
    on_table: Callable[[str, int], None] = lambda table, rows: None,
) -> CopyReport:
    """Copy every intmon table of `source_url` into `target_url` (see the module doc).

    Refuses a target that already holds history unless `force`, which replaces it. The source
    is opened read-only and must be of this intmon's schema (`intmon run` upgrades it).
    """
    started = time.monotonic()
    source = Database(source_url, read_only=True)
    target = Database(target_url)
    report = CopyReport(shown(source.engine.url), shown(target.engine.url))
    try:
        source.open()
        target.open()
        with source.engine.connect() as reading, target.engine.begin() as writing:
            present = set(inspect(reading).get_table_names())
            tables = [t for t in SQLModel.metadata.sorted_tables if t.name in present]
            known = {t.name for t in SQLModel.metadata.sorted_tables}
            report.left_out = sorted(present - known)
            _make_room(writing, tables, force)
            for table in tables:
                report.rows[table.name] = _copy(reading, writing, table, batch)
                on_table(table.name, report.rows[table.name])
            if is_postgres(writing):
                _move_sequences(writing, tables)
            _verify(reading, writing, tables)
    finally:
        source.close()
        target.close()
    report.seconds = time.monotonic() - started
    return report


def _count(connection: Connection, table: Table) -> int:
    return int(connection.execute(select(func.count()).select_from(table)).scalar() or 0)


def _make_room(writing: Connection, tables: list[Table], force: bool) -> None:
    """Empty the target's tables; refuse unless `force` when any holds rows (its `meta`, which
    a new database has too, aside)."""
    full = [t.name for t in tables if t.name != "meta" and _count(writing, t)]
    if full and not force:
        raise StorageError(
            f"the target database already has rows in {', '.join(full)}: copy into an empty "
            "database, or pass --force to replace what it holds"
        )
    for table in reversed(tables):
        # `meta` too: the source's (the same schema version, its rollup progress) replaces it.
        writing.execute(table.delete())


def _copy(reading: Connection, writing: Connection, table: Table, batch: int) -> int:
    """Stream `table` from the source in batches of `batch` rows; returns the rows copied."""
    # Read through the target's table definition, so values arrive as Python types (SQLite's
    # 0/1 as booleans) that the target's driver takes.
    rows = reading.execution_options(yield_per=batch).execute(select(table))
    copied = 0
    for part in rows.partitions():
        writing.execute(insert(table), [dict(row._mapping) for row in part])
        copied += len(part)
    return copied


def _move_sequences(writing: Connection, tables: list[Table]) -> None:
    """Postgres hands out ids from a sequence that copied rows did not advance: move each one
    past the highest id copied, or the next insert would collide with a copied row."""
    for table in tables:
        column = table.autoincrement_column
        if column is None:
            continue
        writing.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence(:table, :column), "
                f'coalesce(max("{column.name}"), 0) + 1, false) FROM "{table.name}"'
            ),
            {"table": table.name, "column": column.name},
        )


def _verify(reading: Connection, writing: Connection, tables: list[Table]) -> None:
    wrong = [
        f"{t.name} ({source} in the source, {target} copied)"
        for t in tables
        if (source := _count(reading, t)) != (target := _count(writing, t))
    ]
    if wrong:
        raise StorageError(f"row counts differ, nothing was copied: {', '.join(wrong)}")
