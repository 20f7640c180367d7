"""`GET /status`: the public status page, for customers and the world.

It shows only the checks the config marks public, and of each only its name, state, uptime and
latency. The page is built from `PublicCheck`, which has no field for a reason, a URL, a header
or a request id: what it does not carry, no renderer can leak by mistake.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from monitor.core.units import DAY, hour_of
from monitor.engine.status import State
from monitor.signals.history import HourSummary
from monitor.storage.store import Store
from monitor.storage.writer import DatabaseUnavailable
from monitor.web.pages.public import render_public
from monitor.web.statuspage import HTML_HEADERS, Handler

if TYPE_CHECKING:
    from monitor.engine.daemon import Daemon

UPTIME_WINDOWS = (("24 h", DAY), ("7 d", 7 * DAY), ("30 d", 30 * DAY))
# (hour start, runs, failures) of the stored hours, per check.
Hours = dict[str, list[tuple[int, int, int]]]


@dataclass(frozen=True)
class PublicCheck:
    name: str
    state: State
    uptime: tuple[float | None, ...]  # the share of passing runs over each of UPTIME_WINDOWS
    day: tuple[HourSummary, ...]  # runs, failures and p95 per hour: numbers only


def public_page(daemon: Daemon) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        now = daemon.clock.time()
        config = daemon.config
        names = {c.name for c in config.checks if config.is_public(c)}
        states = [(c.name, c.state) for c in daemon.status().checks if c.name in names]
        try:
            # A worker thread: the event loop never waits on the disk.
            stored = await daemon.writer.read(read_hours, daemon.store, names, now)
        except DatabaseUnavailable:
            stored = {}  # logged once by the writer; the day in memory still counts
        checks = [
            public_check(name, state, daemon.history.snapshot(name, now), stored.get(name, []), now)
            for name, state in states
        ]
        body = render_public(config.status_page.title, checks, now)
        return web.Response(text=body, content_type="text/html", headers=HTML_HEADERS)

    return handler


def read_hours(store: Store, names: Iterable[str], now: float) -> Hours:
    """Blocking: the stored hourly rollups of the longest uptime window, per check."""
    since = now - UPTIME_WINDOWS[-1][1]
    return {
        name: [(r.hour, r.count, r.failures) for r in store.rollups.hours(name, since)]
        for name in names
    }


def public_check(
    name: str,
    state: State,
    day: Sequence[HourSummary],
    stored: Sequence[tuple[int, int, int]],
    now: float,
) -> PublicCheck:
    """Pure. The day in memory wins over the stored hours it overlaps: it has the open hour."""
    hours = {hour: (runs, failures) for hour, runs, failures in stored}
    hours.update({h.hour: (h.runs, h.failures) for h in day})
    uptime = []
    for _, span in UPTIME_WINDOWS:
        first = hour_of(now - span)
        counted = [v for hour, v in hours.items() if hour >= first]
        runs = sum(r for r, _ in counted)
        uptime.append(1 - sum(f for _, f in counted) / runs if runs else None)
    return PublicCheck(name, state, tuple(uptime), tuple(day))
