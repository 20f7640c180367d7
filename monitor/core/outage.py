"""A dependency's outage as two log lines, not one per attempt.

A database or a notifier that is down is retried every second or so; logging each attempt
(let alone its traceback) buries the one fact an operator needs under thousands of lines. An
`Outage` logs one warning when the first attempt fails and one when an attempt succeeds again,
with how long it lasted and how many attempts failed; attempts in between go to debug.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from monitor.core.clock import Clock
from monitor.core.errors import IntmonError
from monitor.core.units import format_duration


def brief(error: BaseException | str) -> str:
    """One line for a log: the driver's own message when a library wrapped it (SQLAlchemy's
    text carries the whole statement and its parameters)."""
    if isinstance(error, str):
        return error
    if isinstance(error, IntmonError):
        return str(error).strip().split("\n", 1)[0]  # ours: the message says it all
    inner = getattr(error, "orig", None) or error
    lines = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {lines[0] if lines else ''}".rstrip(": ")


class Outage:
    """Whether `what` works, as seen by the attempts reported to it."""

    def __init__(
        self,
        what: str,
        log: logging.Logger,
        clock: Clock,
        meanwhile: str,
        on_change: Callable[[bool], None] = lambda up: None,
    ) -> None:
        self.what = what
        self.log = log
        self.clock = clock
        self.meanwhile = meanwhile  # what happens to the work while it is down
        self.on_change = on_change
        self.since: float | None = None  # monotonic, while down
        self.failures = 0  # attempts failed in this outage

    @property
    def up(self) -> bool:
        return self.since is None

    def failed(self, error: BaseException | str) -> None:
        self.failures += 1
        if self.since is not None:
            self.log.debug("%s still unavailable (attempt %d): %s", self.what, self.failures,
                           brief(error))  # fmt: skip
            return
        self.since = self.clock.monotonic()
        self.log.warning("%s unavailable: %s; %s", self.what, brief(error), self.meanwhile)
        self.on_change(False)

    def recovered(self, detail: str = "") -> None:
        """An attempt worked. `detail` says what waited (logged only when it ends an outage)."""
        if self.since is None:
            return
        lasted = format_duration(self.clock.monotonic() - self.since)
        self.log.warning(
            "%s available again after %s: %d attempts failed%s",
            self.what,
            lasted,
            self.failures,
            f"; {detail}" if detail else "",
        )
        self.since, self.failures = None, 0
        self.on_change(True)
