"""Where a freshness check reads the newest timestamp: an HTTP API or a SQL database.

(Heartbeats are pushed, not read: see checks/freshness.py and monitor/web/heartbeats.py.)
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import jsonpath
import sqlalchemy
from pydantic import Field, PrivateAttr, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from checks.assertions import Expect, compile_path
from checks.auth import AuthConfig
from checks.base import Result, RunContext
from checks.http import RequestSpec, send
from checks.transport import HttpTransport
from monitor.core.model import Model
from monitor.core.timestamps import parse_timestamp


@dataclass
class Reading:
    """The newest timestamp a source reported, its count, and the result of reading it."""

    ts: float
    count: int | None
    result: Result


class HttpSource(HttpTransport):
    type: Literal["http"]
    url: str | None = None  # shorthand for request: {url: ...}
    headers: dict[str, str] = Field(default_factory=dict)
    request: RequestSpec | None = None
    auth: AuthConfig | None = None
    expect: Expect = Field(default_factory=Expect)
    timestamp: str  # JSONPath; several matches: the newest counts
    count: str | None = None  # JSONPath: a number, a list (its length), or many matches

    _request: RequestSpec = PrivateAttr()
    _timestamp: jsonpath.JSONPath | jsonpath.CompoundJSONPath = PrivateAttr()
    _count: jsonpath.JSONPath | jsonpath.CompoundJSONPath | None = PrivateAttr(default=None)

    @field_validator("timestamp", "count")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None:
            compile_path(value)
        return value

    @model_validator(mode="after")
    def _one_request(self) -> HttpSource:
        if (self.url is None) == (self.request is None):
            raise ValueError("give either url (with optional headers) or request")
        if self.request is not None and self.headers:
            raise ValueError("with request, put headers inside request")
        return self

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        self._request = self.request or RequestSpec(url=self.url or "", headers=self.headers)
        self._timestamp = compile_path(self.timestamp)
        self._count = compile_path(self.count) if self.count else None

    @property
    def spec(self) -> RequestSpec:
        return self._request


class SqlSource(Model):
    type: Literal["sql"]
    url: str  # a SQLAlchemy URL: sqlite:///dest.db, postgresql+psycopg://user:pw@host/db
    # One row: the newest timestamp first (datetime, ISO text or epoch), optionally a count.
    query: str = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            make_url(value).get_dialect()
        except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError) as exc:
            raise ValueError(f"not a usable SQLAlchemy URL: {exc}") from None
        return value

    def describe(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)


async def read_http(ctx: RunContext, source: HttpSource) -> Reading | Result:
    result, body = await send(ctx, source.spec, source.expect, source, source.auth)
    result.shape = None  # freshness judges the data's age; schema_drift is not its rule
    if not result.ok:
        return result
    try:
        document = json.loads(body)
    except ValueError:
        return _failed(result, "invalid_response", "body is not JSON")
    values = source._timestamp.findall(document)
    if not values:
        return _failed(result, "assertion", f"{source.timestamp} not found")
    try:
        ts = max(parse_timestamp(value) for value in values)
    except ValueError as exc:
        return _failed(result, "invalid_response", f"{source.timestamp}: {exc}")
    count = _count(source._count.findall(document)) if source._count is not None else None
    return Reading(ts, count, result)


def _count(matches: list[Any]) -> int:
    """`$.total` -> its number; `$.items` -> the list's length; `$.items[*]` -> the matches."""
    if len(matches) == 1:
        value = matches[0]
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, list):
            return len(value)
    return len(matches)


def _failed(result: Result, error_class: str, reason: str) -> Result:
    result.ok, result.error_class, result.reason = False, error_class, reason
    return result


async def read_sql(ctx: RunContext, source: SqlSource) -> Reading | Result:
    """Run the query in a worker thread; on timeout, interrupt it instead of abandoning it."""
    started_at = ctx.clock.time()
    start = time.perf_counter()
    query = _Query(source.url, source.query)
    try:
        row = await asyncio.to_thread(query.run)
    except asyncio.CancelledError:
        # A thread cannot be cancelled; the driver can stop its statement, so the runner's
        # timeout really ends the work and slow queries cannot pile up worker threads.
        query.cancel()
        raise
    except sqlalchemy.exc.SQLAlchemyError as exc:
        error_class = "connect" if query.stage == "connect" else "invalid_response"
        detail = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc
        reason = f"sql {query.stage}: {_first_line(detail)}"
        return Result.failure(error_class, reason, latency=time.perf_counter() - start)
    result = Result(ok=True, latency=time.perf_counter() - start, started_at=started_at)
    if row is None or row[0] is None:
        return _failed(result, "assertion", "no data: the query returned no timestamp")
    try:
        ts = parse_timestamp(row[0])
        count = int(row[1]) if len(row) > 1 and row[1] is not None else None
    except (ValueError, TypeError) as exc:
        return _failed(result, "invalid_response", f"query result: {exc}")
    return Reading(ts, count, result)


class _Query:
    """One query on a worker thread, which the event loop can interrupt."""

    def __init__(self, url: str, sql: str) -> None:
        self.url, self.sql = url, sql
        self.stage = "connect"
        self.cancelled = False
        self._dbapi_connection: Any = None

    def run(self) -> Any:
        # NullPool: a check runs once a minute or so; idle pooled connections only annoy DBAs.
        engine = sqlalchemy.create_engine(self.url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                self._dbapi_connection = connection.connection.dbapi_connection
                if self.cancelled:
                    return None  # timed out while connecting: do not start the query
                self.stage = "query"
                return connection.execute(sqlalchemy.text(self.sql)).first()
        finally:
            engine.dispose()

    def cancel(self) -> None:
        self.cancelled = True
        # sqlite3 has interrupt(), psycopg and psycopg2 have cancel(); all are thread-safe.
        handle = self._dbapi_connection
        stop = getattr(handle, "interrupt", None) or getattr(handle, "cancel", None)
        if stop is not None:
            stop()


def _first_line(exc: BaseException | None) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
