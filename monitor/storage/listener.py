"""Postgres LISTEN on one channel, on a connection of its own (what `backend.notify` sends).

A notification reaches the listening connections when its sender's transaction commits, so it
arrives with the change it announces, never before it and never for one rolled back. The
connection is psycopg 3's asynchronous one: waiting for notifications is waiting on a socket,
on the event loop, and stopping is cancelling the task that runs `Listener.run`. It is made
from the engine's own URL, so it reaches the same database with the same credentials.

What is sent while the connection is down is lost: after each (re)connection `on_listening`
is called, so the owner reads afresh what it may have missed. A database that is down is an
outage (monitor.core.outage), logged when it starts and when it ends, retried with backoff.
Error texts are masked with the engine's password before they are logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from monitor.core.backoff import backoff
from monitor.core.clock import Clock
from monitor.core.outage import Outage, brief
from monitor.core.redact import redact

log = logging.getLogger(__name__)


def connect_args(engine: Engine) -> dict[str, Any]:
    """The keyword arguments psycopg.connect takes for `engine`'s database: the dialect's own
    reading of its URL (host, port, user, password, options, query parameters, and so the
    connection timeouts `storage.database` sets)."""
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    kwargs.pop("context", None)  # SQLAlchemy's type adapters: a LISTEN reads no rows
    return dict(kwargs)


class Listener:
    """Calls `on_message(payload)` for every notification on `channel`; `run` until cancelled.

    `check_every`: how long the connection may stay quiet before a round trip checks it is
    alive (a server that vanished without closing it would otherwise be waited on forever).
    """

    def __init__(
        self,
        engine: Engine,
        channel: str,
        clock: Clock,
        *,
        on_message: Callable[[str], None],
        on_listening: Callable[[], None],
        check_every: float = 30.0,
        retry_base: float = 0.2,
        retry_cap: float = 10.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.channel = channel
        self.on_message = on_message
        self.on_listening = on_listening
        self.check_every = check_every
        self.retry_base, self.retry_cap, self.jitter = retry_base, retry_cap, jitter
        self._connect_args = connect_args(engine)
        password = engine.url.password
        self._secrets = [str(password)] if password else []
        self.listening = False  # connected, and LISTENing
        self.outage = Outage(
            f"database notifications ({channel})",
            log,
            clock,
            meanwhile="what they announce is read at the next regular look",
        )

    async def run(self) -> None:
        # The postgres extra: only a process on Postgres listens, and then psycopg is there.
        import psycopg  # noqa: PLC0415

        failures = 0
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError, TimeoutError) as exc:
                failures = 1 if self.outage.up else failures + 1
                self.outage.failed(redact(brief(exc), self._secrets))
            await asyncio.sleep(
                backoff(failures, base=self.retry_base, cap=self.retry_cap, jitter=self.jitter)
            )

    async def _listen(self) -> None:
        """Connect, LISTEN and hand on notifications until the connection fails."""
        from psycopg import AsyncConnection, sql  # noqa: PLC0415 (as in `run`)

        connection = await AsyncConnection.connect(autocommit=True, **self._connect_args)
        try:
            listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.channel))
            await connection.execute(listen)
            self.listening = True
            self.outage.recovered("notifications are heard again")
            self.on_listening()
            while True:
                quiet = connection.notifies(timeout=self.check_every)
                async with contextlib.aclosing(quiet) as notes:
                    async for note in notes:
                        self.on_message(note.payload)
                await asyncio.wait_for(connection.execute("SELECT 1"), self.check_every)
        finally:
            self.listening = False
            await connection.close()
