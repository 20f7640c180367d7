"""Freshness checks: http and sql sources against real servers and SQLite files, heartbeats."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from checks.base import Result, RunContext
from checks.freshness import FreshnessCheck
from monitor.core.clock import FakeClock
from monitor.core.redact import Redactor
from monitor.core.timestamps import EPOCH_MILLIS, parse_timestamp
from monitor.engine.runner import Runner

NOW = 1_700_000_000.0  # FakeClock's start


def freshness(source: dict[str, Any], **fields: Any) -> FreshnessCheck:
    data = {"name": "sync", "type": "freshness", "max_age": "1h", "source": source}
    return FreshnessCheck.model_validate(data | fields)


async def run(ctx: RunContext, check: FreshnessCheck) -> Result:
    return await Runner(ctx, concurrency=10, per_host=10).execute(check)


@pytest.fixture
def fake_ctx(session: aiohttp.ClientSession, clock: FakeClock) -> RunContext:
    return RunContext(session=session, clock=clock, redactor=Redactor())


TIMESTAMPS = [
    ("rfc3339-z", "2023-11-14T22:13:20Z"),
    ("rfc3339-offset", "2023-11-14T23:13:20+01:00"),
    ("iso-no-zone-is-utc", "2023-11-14T22:13:20"),
    ("iso-space-fraction", "2023-11-14 22:13:20.000"),
    ("epoch-seconds", 1_700_000_000),
    ("epoch-milliseconds", 1_700_000_000_000),
    ("epoch-seconds-text", "1700000000"),
    ("epoch-float", 1_700_000_000.0),
    ("http-date", "Tue, 14 Nov 2023 22:13:20 GMT"),
    ("naive-datetime", datetime(2023, 11, 14, 22, 13, 20)),  # naive means UTC
    ("aware-datetime", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
]


@pytest.mark.parametrize("value", [t[1] for t in TIMESTAMPS], ids=[t[0] for t in TIMESTAMPS])
def test_every_common_timestamp_format_is_read(value: Any) -> None:
    assert parse_timestamp(value) == NOW


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(EPOCH_MILLIS - 1, EPOCH_MILLIS - 1), (EPOCH_MILLIS, EPOCH_MILLIS / 1000)],
    ids=["seconds-just-below", "milliseconds-from"],
)
def test_epoch_milliseconds_start_where_the_header_parser_says(
    value: float, seconds: float
) -> None:
    """One boundary for every caller: 1e11 ms is 1973, 1e11 s would be the year 5138."""
    assert parse_timestamp(value) == seconds
    assert parse_timestamp(f"{value:.0f}") == seconds


@pytest.mark.parametrize("value", ["yesterday", "", None, True, -5, {"t": 1}], ids=repr)
def test_things_that_are_not_timestamps_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="not a timestamp"):
        parse_timestamp(value)


AGES = [("two-hours-old-fails", 7200, False, "data is 2h old (max_age 1h)"),
        ("a-minute-old-passes", 60, True, "data is 1m old (max_age 1h)")]  # fmt: skip


@pytest.mark.parametrize(("age", "ok", "reason"), [a[1:] for a in AGES], ids=[a[0] for a in AGES])
async def test_an_http_source_is_judged_by_the_age_of_its_timestamp(
    ctx: RunContext, sandbox: str, age: int, ok: bool, reason: str
) -> None:
    source = {
        "type": "http",
        "url": f"{sandbox}/sync/orders?age={age}",
        "count": "$.count",
        "timestamp": "$.updated_at",
    }
    result = await run(ctx, freshness(source, min_count=1))
    assert (result.ok, result.reason) == (ok, reason)
    assert result.error_class == (None if ok else "assertion")
    assert result.signals["freshness_age"] == pytest.approx(age, abs=5)
    assert result.signals["freshness_count"] == 42
    assert result.status == 200


async def test_a_sync_that_moves_nothing_fails_min_count(
    fake_ctx: RunContext, sandbox: str, session: aiohttp.ClientSession
) -> None:
    await session.put(sandbox + "/sync/orders", json={"updated_at": NOW * 1000 - 5000, "count": 0})
    source = {
        "type": "http",
        "url": sandbox + "/sync/orders",
        "timestamp": "$.updated_at",
        "count": "$.count",
    }
    result = await run(fake_ctx, freshness(source, min_count=1))
    assert (result.ok, result.reason) == (False, "count is 0 (min_count 1)")
    assert result.signals == {"freshness_age": 5.0, "freshness_count": 0}


async def test_the_newest_of_many_matches_counts(fake_ctx: RunContext, serve: Any) -> None:
    async def orders(request: web.Request) -> web.Response:
        items = [{"at": NOW - 9000}, {"at": NOW - 30}, {"at": NOW - 4000}]
        return web.json_response({"items": items})

    app = web.Application()
    app.router.add_get("/orders", orders)
    url = await serve(app)
    source = {
        "type": "http",
        "url": url + "/orders",
        "timestamp": "$.items[*].at",
        "count": "$.items",
    }
    result = await run(fake_ctx, freshness(source))
    assert result.ok, result.reason
    assert result.signals == {"freshness_age": 30.0, "freshness_count": 3}


HTTP_FAILURES = [
    ("path-missing", "/json", "$.updated_at", "assertion", "$.updated_at not found"),
    ("not-a-timestamp", "/json", "$.version", "invalid_response", "$.version: '2.1.0' is not"),
    ("server-error", "/status/500", "$.x", "http_5xx", "HTTP 500 (expected 2xx)"),
    ("not-json", "/not-json", "$.x", "invalid_response", "body is not JSON"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "timestamp", "error_class", "reason"),
    [f[1:] for f in HTTP_FAILURES],
    ids=[f[0] for f in HTTP_FAILURES],
)
async def test_an_unreadable_http_source_fails_with_its_cause(
    ctx: RunContext, sandbox: str, path: str, timestamp: str, error_class: str, reason: str
) -> None:
    result = await run(
        ctx, freshness({"type": "http", "url": sandbox + path, "timestamp": timestamp})
    )
    assert (result.ok, result.error_class) == (False, error_class)
    assert result.reason.startswith(reason), result.reason


def make_orders_db(path: Path, rows: list[tuple[int, Any]]) -> str:
    with sqlite3.connect(path) as db:
        db.execute("create table orders (id integer primary key, updated_at)")
        db.executemany("insert into orders values (?, ?)", rows)
    db.close()
    return f"sqlite:///{path}"


SQL = [
    ("2h-old-iso-fails", [(1, "2023-11-14T20:13:20Z"), (2, "2023-11-14T19:00Z")], False, 7200),
    ("a-minute-old-epoch-passes", [(1, NOW - 3600 * 5), (2, NOW - 60)], True, 60),
    ("epoch-milliseconds", [(1, (NOW - 60) * 1000)], True, 60),
]  # fmt: skip


@pytest.mark.parametrize(("rows", "ok", "age"), [s[1:] for s in SQL], ids=[s[0] for s in SQL])
async def test_a_sql_source_reads_the_newest_timestamp_and_a_count(
    fake_ctx: RunContext, tmp_path: Path, rows: list[tuple[int, Any]], ok: bool, age: int
) -> None:
    url = make_orders_db(tmp_path / "dest.db", rows)
    query = "select max(updated_at), count(*) from orders"
    result = await run(fake_ctx, freshness({"type": "sql", "url": url, "query": query}))
    assert result.ok is ok, result.reason
    assert result.signals == {"freshness_age": age, "freshness_count": len(rows)}
    if not ok:
        assert (result.error_class, result.reason) == ("assertion", "data is 2h old (max_age 1h)")


NO_DATA = "no data: the query returned no timestamp"
SQL_FAILURES = [
    ("empty-table", "select max(updated_at) from orders", "assertion", NO_DATA),
    ("bad-query", "select max(x) from nope", "invalid_response", "sql query: no such table: nope"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("query", "error_class", "reason"),
    [f[1:] for f in SQL_FAILURES],
    ids=[f[0] for f in SQL_FAILURES],
)
async def test_a_sql_source_that_cannot_answer_fails_with_its_cause(
    fake_ctx: RunContext, tmp_path: Path, query: str, error_class: str, reason: str
) -> None:
    url = make_orders_db(tmp_path / "dest.db", [])
    result = await run(fake_ctx, freshness({"type": "sql", "url": url, "query": query}))
    assert (result.ok, result.error_class, result.reason) == (False, error_class, reason)


async def test_an_unopenable_database_is_a_connect_failure(
    fake_ctx: RunContext, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/missing-dir/dest.db"
    result = await run(fake_ctx, freshness({"type": "sql", "url": url, "query": "select 1"}))
    assert (result.error_class, result.reason) == (
        "connect",
        "sql connect: unable to open database file",
    )


async def test_a_query_that_never_ends_is_interrupted_at_the_timeout(
    fake_ctx: RunContext, tmp_path: Path
) -> None:
    url = make_orders_db(tmp_path / "dest.db", [])
    forever = "with recursive n(x) as (select 1 union all select x + 1 from n) select max(x) from n"
    check = freshness({"type": "sql", "url": url, "query": forever}, timeout="200ms")
    result = await run(fake_ctx, check)
    assert result.error_class == "timeout"
    # The worker thread was interrupted rather than abandoned: the executor drains at once.
    await asyncio.wait_for(asyncio.get_running_loop().shutdown_default_executor(), timeout=5)


def test_a_sql_url_without_a_driver_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="not a usable SQLAlchemy URL"):
        freshness({"type": "sql", "url": "nosuchdb://x/y", "query": "select 1"})


def test_the_source_type_is_a_discriminated_union() -> None:
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        freshness({"type": "ftp", "url": "ftp://x"})


async def test_a_heartbeat_never_received_fails_once_max_age_passed_since_watching(
    fake_ctx: RunContext, clock: FakeClock
) -> None:
    check = freshness({"type": "heartbeat"})
    first = await run(fake_ctx, check)
    assert (first.ok, first.reason) == (True, "waiting for the first heartbeat (max_age 1h)")
    clock.advance(3601)
    late = await run(fake_ctx, check)
    assert (late.ok, late.error_class) == (False, "assertion")
    assert late.reason == "no heartbeat since intmon started watching 1h1s ago (max_age 1h)"
    assert late.signals["freshness_age"] == 3601


async def test_a_heartbeat_keeps_its_check_fresh_until_max_age_passes(
    fake_ctx: RunContext, clock: FakeClock
) -> None:
    check = freshness({"type": "heartbeat"}, min_count=1)
    fake_ctx.heartbeats.record("sync", clock.time(), count=120)
    clock.advance(600)
    fresh = await run(fake_ctx, check)
    assert (fresh.ok, fresh.signals) == (True, {"freshness_age": 600, "freshness_count": 120})
    clock.advance(3001)
    stale = await run(fake_ctx, check)
    assert (stale.ok, stale.reason) == (False, "data is 1h1s old (max_age 1h)")


async def test_a_reported_failure_fails_the_check_until_the_next_success(
    fake_ctx: RunContext, clock: FakeClock
) -> None:
    check = freshness({"type": "heartbeat"})
    book = fake_ctx.heartbeats
    book.record("sync", clock.time(), count=5)
    clock.advance(60)
    book.record("sync", clock.time(), failed=True, message="source API returned 503")
    clock.advance(60)
    failed = await run(fake_ctx, check)
    assert (failed.ok, failed.reason) == (
        False,
        "the job reported a failed run 1m ago: source API returned 503",
    )
    book.record("sync", clock.time(), count=7)
    assert (await run(fake_ctx, check)).ok
