"""The cluster's two tables and their statements (blocking: run them from a thread).

`replicas`: one row per live process, its lease renewed on the database's clock, so hosts
whose clocks disagree still agree on who is alive. `slot_claims`: one row per (check, slot)
some replica has taken; the primary key is what makes a slot run at most once.
A replica that joins (or joins again, its row lost) or leaves says so on `CHANNEL`, in the
transaction that changes its row: the others hear it at the commit and divide at once.
The tables exist on SQLite too (created with the rest), where one process owns everything.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Table, delete
from sqlmodel import Field, SQLModel, col, select

from monitor.storage.backend import BIG_INTEGER, database_now, insert_new, notify, upsert


class ReplicaRow(SQLModel, table=True):
    __tablename__ = "replicas"

    id: str = Field(primary_key=True)
    host: str
    pid: int
    started_at: float  # unix seconds, the replica's own clock
    lease_until: float  # unix seconds, the database's clock
    config_digest: str
    checks_owned: int = 0


class SlotClaimRow(SQLModel, table=True):
    __tablename__ = "slot_claims"

    check: str = Field(primary_key=True)
    slot: int = Field(primary_key=True, sa_type=BIG_INTEGER)  # unix milliseconds of the slot
    replica: str


REPLICAS: Table = ReplicaRow.__table__  # type: ignore[attr-defined]
CLAIMS: Table = SlotClaimRow.__table__  # type: ignore[attr-defined]
# Only the lease and what the replica reports change on renewal; `started_at` stays.
RENEWED = ("host", "pid", "lease_until", "config_digest", "checks_owned")
# Postgres NOTIFY channel of joins and leaves; the payload is the replica's id.
CHANNEL = "intmon_replicas"


def renew(engine: Engine, me: ReplicaRow, lease: float) -> tuple[float, list[ReplicaRow]]:
    """Extend `me`'s lease to the database's now + `lease` (joining if its row is gone or its
    lease ran out, and then telling the others), delete the rows whose lease has run out, and
    return (database now, the live replicas)."""
    with engine.begin() as connection:
        now = database_now(connection)
        # Locked, so no one deletes it as expired between this look and the renewal.
        mine = select(ReplicaRow.lease_until).where(col(ReplicaRow.id) == me.id)
        held = connection.execute(mine.with_for_update()).scalar_one_or_none()
        row = {**me.model_dump(), "lease_until": now + lease}
        upsert(connection, REPLICAS, [row], only=RENEWED)
        # Whoever sees an expired row deletes it: a replica killed with -9 leaves one behind.
        connection.execute(delete(REPLICAS).where(col(ReplicaRow.lease_until) <= now))
        if held is None or held <= now:
            notify(connection, CHANNEL, me.id)
        query = select(ReplicaRow).order_by(col(ReplicaRow.id))
        live = [ReplicaRow.model_validate(dict(r._mapping)) for r in connection.execute(query)]
    return now, live


def leave(engine: Engine, replica: str) -> None:
    """A graceful stop: the others hear it at the commit and divide this replica's checks."""
    with engine.begin() as connection:
        connection.execute(delete(REPLICAS).where(col(ReplicaRow.id) == replica))
        notify(connection, CHANNEL, replica)


def claim(engine: Engine, slots: list[tuple[str, int]], replica: str) -> set[tuple[str, int]]:
    """Take each (check, slot) of `slots` for `replica`; returns those it got. Of any number
    of replicas claiming one slot, exactly one gets it. One statement for the whole batch."""
    if not slots:
        return set()
    rows = [{"check": check, "slot": slot, "replica": replica} for check, slot in slots]
    with engine.begin() as connection:
        # The rows as parameters, not in the statement (`.values(rows)`): SQLAlchemy compiles
        # a statement with the rows in it afresh for every batch, which cost more CPU than the
        # rest of the claim. This one is compiled once; SQLAlchemy still sends one INSERT with
        # a VALUES row per claim ("insertmanyvalues"), so a batch is one round trip.
        won = connection.execute(_claim_statement(engine), rows)
        return {(str(row[0]), int(row[1])) for row in won}


# The claim statement of each kind of database, built once: SQLAlchemy memoizes what it works
# out about a statement (its cache key, its RETURNING columns) on the statement object, so one
# built per claim was worked out afresh each time, a fifth of the claim's CPU. Keyed by kind,
# not by engine, so that it keeps no engine alive.
_CLAIM_STATEMENTS: dict[str, Any] = {}


def _claim_statement(engine: Engine) -> Any:
    kind = engine.dialect.name
    if kind not in _CLAIM_STATEMENTS:
        new = insert_new(engine, CLAIMS, ["check", "slot"])
        _CLAIM_STATEMENTS[kind] = new.returning(CLAIMS.c.check, CLAIMS.c.slot)
    return _CLAIM_STATEMENTS[kind]


def prune_claims(engine: Engine, before: int) -> int:
    """Forget claims of slots before `before` (unix ms): by then no replica can still be
    deciding whether to run them."""
    with engine.begin() as connection:
        result = connection.execute(delete(CLAIMS).where(col(SlotClaimRow.slot) < before))
        return int(result.rowcount)
