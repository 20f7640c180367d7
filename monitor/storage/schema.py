"""The tables intmon keeps, and the plain records the writer stores and readers get back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Index, Row, text
from sqlmodel import Field, SQLModel

from monitor.core.errors import StorageError
from monitor.storage.backend import BIG_INTEGER

# 1: runs, deprecations, meta. 2: hourly rollups (created on open when missing).
# 3: check names interned in `checks`; runs and rollups clustered by (check_id, time), with
#    a passing run's "HTTP <status>" reason and empty signals stored as NULL (see RunRecord).
# 4: runs.request_id, the provider's id of a failed run's request.
# 5: alert_states.cause, the error class an alert fired with (notifiers are chosen by it).
# 6: shapes, the response shape each check learned (created on open; `intmon schema` reads it).
# 7: runs.slot, the scheduled slot a replica claimed for the run, unique per check; the
#    replicas and slot_claims tables of several replicas on one Postgres (created on open).
SCHEMA_VERSION = 7


class CheckRow(SQLModel, table=True):
    """Every check name that has ever stored a run, once: rows refer to it by `id`."""

    __tablename__ = "checks"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)


class StoredRun(SQLModel, table=True):
    """One run as it is on disk: ~40 bytes in SQLite. Readers get a RunRecord instead.

    The primary key is the only lookup (one check, a time range), so in SQLite it is the table
    itself: no rowid, no second copy of every key in an index. `seq` only tells apart runs of
    one check at the very same `ts`; it is 0 (no bytes on disk) for all others.
    """

    __tablename__ = "runs"
    __table_args__ = (
        # Replicas on one database store a (check, slot) once: a second copy of a run (two
        # replicas that both believed they owned it) is left out on insert, not hoped away.
        # Partial, so runs without a slot (one process alone) cost the index nothing.
        Index(
            "ux_runs_slot",
            "check_id",
            "slot",
            unique=True,
            sqlite_where=text("slot IS NOT NULL"),
            postgresql_where=text("slot IS NOT NULL"),
        ),
        {"sqlite_with_rowid": False},
    )

    check_id: int = Field(primary_key=True)
    ts: float = Field(primary_key=True)  # unix seconds when the run started
    seq: int = Field(default=0, primary_key=True, sa_column_kwargs={"server_default": "0"})
    ok: bool
    error_class: str | None = None
    status: int | None = None
    latency: float | None = None  # seconds
    reason: str | None = None  # NULL: "HTTP <status>"
    signals: str | None = None  # small JSON object; NULL: {}
    request_id: str | None = None  # failed runs only (see RunRecord.as_row)
    # Unix milliseconds of the scheduled slot the run was claimed for; NULL with one process.
    slot: int | None = Field(default=None, sa_type=BIG_INTEGER)


class DeprecationRow(SQLModel, table=True):
    """The latest deprecation announcement per check, with when it was first and last seen."""

    __tablename__ = "deprecations"

    check: str = Field(primary_key=True)
    first_seen: float
    last_seen: float
    deprecated_at: float | None = None
    sunset_at: float | None = None
    links: str = "[]"  # JSON list: the migration guide
    sunset_links: str = "[]"
    message: str | None = None
    active: bool = True


class StoredRollup(SQLModel, table=True):
    """One check's runs in one clock hour, kept long after the raw runs are pruned.

    Latency quantiles are over the runs that were timed; `p95_ok` only over the timed runs that
    passed, which is what the baseline p95 uses (see CheckSignals.seed_baseline).
    """

    __tablename__ = "rollups"
    # The primary key is the only lookup (by check, then hour), so it is the table itself.
    __table_args__ = {"sqlite_with_rowid": False}

    check_id: int = Field(primary_key=True)
    hour: int = Field(primary_key=True, sa_type=BIG_INTEGER)  # unix seconds, start of the hour
    count: int
    failures: int
    rate_limited: int  # runs answered with HTTP 429
    timed: int  # runs with a latency
    p50: float | None = None  # seconds
    p95: float | None = None
    p99: float | None = None
    p95_ok: float | None = None  # over passing runs only


class MetaRow(SQLModel, table=True):
    __tablename__ = "meta"

    key: str = Field(primary_key=True)
    value: str


def stored_reason(reason: str, status: int | None) -> str | None:
    """NULL for the reason nearly every run has, "HTTP <status>": read back by `read_reason`."""
    return None if status is not None and reason == f"HTTP {status}" else reason


def read_reason(stored: str | None, status: int | None) -> str:
    if stored is not None:
        return stored
    return "" if status is None else f"HTTP {status}"


@dataclass(frozen=True)
class RollupRow:
    """One check's rollup of one hour, as readers see it (see StoredRollup)."""

    check: str
    hour: int
    count: int
    failures: int
    rate_limited: int
    timed: int
    p50: float | None
    p95: float | None
    p99: float | None
    p95_ok: float | None


@dataclass(frozen=True)
class RunRecord:
    """One run as plain data, already redacted: what the writer stores and readers get back.

    Readers get the full reason and the signals decoded, exactly as the run was recorded
    (`read_reason` and `from_row` undo what `as_row` leaves out).
    """

    check: str
    ts: float
    ok: bool
    error_class: str | None
    status: int | None
    latency: float | None
    reason: str
    signals: dict[str, Any]
    request_id: str | None = None
    slot: int | None = None  # the claimed slot, with several replicas (see StoredRun)

    def as_row(self, check_id: int, seq: int = 0) -> dict[str, Any]:
        """The `runs` row: most runs store no reason and no signals at all.

        The request id is kept for failed runs only: that is what a provider's support asks
        about, and an id on every passing run would double the size of the history.
        """
        signals = json.dumps(self.signals, separators=(",", ":"), default=str)
        return {
            "check_id": check_id,
            "ts": self.ts,
            "seq": seq,
            "ok": self.ok,
            "error_class": self.error_class,
            "status": self.status,
            "latency": self.latency,
            "reason": stored_reason(self.reason, self.status),
            "signals": None if signals == "{}" else signals,
            "request_id": None if self.ok else self.request_id,
            "slot": self.slot,
        }

    @classmethod
    def from_row(cls, check: str, row: Row[Any]) -> RunRecord:
        """The run stored in a `runs` row of `check`."""
        return cls(
            check=check,
            ts=row.ts,
            ok=bool(row.ok),
            error_class=row.error_class,
            status=row.status,
            latency=row.latency,
            reason=read_reason(row.reason, row.status),
            signals=json.loads(row.signals) if row.signals else {},
            request_id=row.request_id,
            slot=getattr(row, "slot", None),
        )


class SchemaError(StorageError):
    """The database's schema is one this intmon cannot use (written by a newer version)."""
