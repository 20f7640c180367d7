"""The tables intmon keeps, and the plain record the writer stores."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

# 1: runs, deprecations, meta. 2: hourly rollups (created on open when missing).
SCHEMA_VERSION = 2


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_check_ts", "check", "ts"),)

    id: int | None = Field(default=None, primary_key=True)
    check: str
    ts: float  # unix seconds when the run started
    ok: bool
    error_class: str | None = None
    status: int | None = None
    latency: float | None = None  # seconds
    reason: str = ""
    signals: str = "{}"  # small JSON object


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


class RollupRow(SQLModel, table=True):
    """One check's runs in one clock hour, kept long after the raw runs are pruned.

    Latency quantiles are over the runs that were timed; `p95_ok` only over the timed runs that
    passed, which is what the baseline p95 uses (see CheckSignals.seed_baseline).
    """

    __tablename__ = "rollups"
    # The primary key is the only lookup (by check, then hour), so it is the table itself:
    # no rowid, no second copy of every check name in a separate index.
    __table_args__ = {"sqlite_with_rowid": False}

    check: str = Field(primary_key=True)
    hour: int = Field(primary_key=True)  # unix seconds at the start of the hour
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


@dataclass(frozen=True)
class RunRecord:
    """One run as handed to the writer: plain data, already redacted."""

    check: str
    ts: float
    ok: bool
    error_class: str | None
    status: int | None
    latency: float | None
    reason: str
    signals: dict[str, Any]

    def as_row(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "ts": self.ts,
            "ok": self.ok,
            "error_class": self.error_class,
            "status": self.status,
            "latency": self.latency,
            "reason": self.reason,
            "signals": json.dumps(self.signals, separators=(",", ":"), default=str),
        }


class SchemaError(Exception):
    pass
