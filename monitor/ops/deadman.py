"""A dead-man's switch: ping an outside URL (e.g. healthchecks.io) while the daemon is alive.

If intmon dies, hangs or loses its network, the pings stop and the outside service pages
someone: the monitor is monitored by something that does not share its fate.

The URL is a secret (anyone holding it can keep the switch quiet), so it is never logged: a
failure is described by its HTTP status or exception type only, because aiohttp's exception
messages often include the URL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiohttp

from monitor.core.clock import Clock

log = logging.getLogger(__name__)


class DeadMansSwitch:
    def __init__(
        self,
        url: str,
        interval: float,
        session: aiohttp.ClientSession,
        clock: Clock,
        on_attempt: Callable[[str], None] = lambda result: None,
        healthy: Callable[[], bool] = lambda: True,
        timeout: float = 10.0,
    ) -> None:
        self._url = url
        self.interval = interval
        self.session = session
        self.clock = clock
        # Called with "success" or "failure" after every ping: the metrics counter.
        self.on_attempt = on_attempt
        # Consulted before every ping: a daemon that is up but not doing its job should let
        # the switch trip rather than vouch for itself.
        self.healthy = healthy
        # A ping must finish well inside its interval, or a slow receiver would stack them.
        self.timeout = min(timeout, interval)
        self._failing = False

    def __repr__(self) -> str:
        return f"DeadMansSwitch(interval={self.interval})"  # never the URL

    async def ping(self) -> bool:
        """One GET. A failure is logged and counted, never raised."""
        try:
            async with self.session.get(
                self._url, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as response:
                await response.read()
                ok = 200 <= response.status < 300
                problem = f"HTTP {response.status}"
        except TimeoutError:
            ok, problem = False, f"no answer within {self.timeout:g}s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            # str(exc) is not logged: for connection and URL errors it contains the URL.
            ok, problem = False, type(exc).__name__
        self.on_attempt("success" if ok else "failure")
        if not ok:
            log.warning("dead-man's switch ping failed: %s", problem)
        elif self._failing:
            log.info("dead-man's switch ping works again")
        self._failing = not ok
        return ok

    async def run(self) -> None:
        """Ping now and then every `interval`, until cancelled.

        The pings come from the event loop: if the loop hangs, they stop, which is the point.
        """
        due = self.clock.monotonic()
        while True:
            if self.healthy():
                await self.ping()
            due += self.interval
            now = self.clock.monotonic()
            if due <= now:
                due = now + self.interval  # a ping owed from a stall is not worth a burst
            await self.clock.sleep(due - now)
