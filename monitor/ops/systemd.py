"""systemd readiness and watchdog notifications (sd_notify), without libsystemd.

The protocol is one datagram of `KEY=value` lines sent to the AF_UNIX socket named by
`$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). Everything here is a no-op
when that variable is unset, so the daemon calls it unconditionally.

Watchdog pings are sent by a task on the event loop, not by a thread: a thread would keep
pinging while the loop hangs, and a hung loop is exactly what `WatchdogSec=` must catch.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping

from monitor.core.clock import Clock

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends sd_notify messages; inputs (environment, clock, pid) are explicit for testing."""

    def __init__(
        self,
        env: Mapping[str, str],
        clock: Clock,
        pid: int | None = None,
        healthy: Callable[[], bool] = lambda: True,
    ) -> None:
        self.clock = clock
        self.pid = os.getpid() if pid is None else pid
        # Consulted before every watchdog ping: when it says no, the pings stop and systemd
        # restarts us, which is the point of asking (e.g. "is the scheduler task alive?").
        self.healthy = healthy
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = self._watchdog_interval(env) if self.address else None
        self._sock: socket.socket | None = None
        self._failing = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def _watchdog_interval(self, env: Mapping[str, str]) -> float | None:
        """Half of WATCHDOG_USEC, as systemd recommends, if the watchdog is meant for us."""
        usec, watchdog_pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if not usec:
            return None
        # WATCHDOG_PID names the process the watchdog is for; a child that inherited our
        # environment must not feed it on our behalf.
        if watchdog_pid and watchdog_pid != str(self.pid):
            return None
        if not usec.isdigit() or int(usec) == 0:
            log.warning("ignoring WATCHDOG_USEC=%r: not a positive number of microseconds", usec)
            return None
        return int(usec) / 1_000_000 / 2

    def notify(self, *fields: str) -> bool:
        """Send `KEY=value` fields as one datagram. Never raises: a lost notification is
        logged, and systemd's own timeouts deal with what it means."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # A full receive queue must cost us a ping, not block the event loop.
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._failing:
                log.warning("cannot notify systemd at $NOTIFY_SOCKET: %s", exc.strerror or exc)
            self._failing = True
            return False
        if self._failing:
            log.info("notifying systemd works again")
        self._failing = False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete: config loaded and storage open."""
        return self.notify("READY=1", *_status(status))

    def reloading(self) -> bool:
        """A reload began; call `ready()` when it is done (or failed and the old config runs)."""
        usec = int(self.clock.monotonic() * 1_000_000)
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *_status(status))

    def status(self, text: str) -> bool:
        """Free-form one-line status, shown by `systemctl status`."""
        return self.notify(*_status(text))

    def ping_watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    async def run_watchdog(self) -> None:
        """Ping every half watchdog period for as long as the event loop runs this task.

        Returns at once when systemd set no watchdog for us; otherwise runs until cancelled.
        """
        interval = self.watchdog_interval
        if interval is None:
            return
        due = self.clock.monotonic()
        while True:
            if self.healthy():
                self.ping_watchdog()
            due += interval
            now = self.clock.monotonic()
            if due <= now:
                # We were held up (a blocked loop): the ping just sent covers the pings that
                # were missed; sending them all now in a burst would mean nothing.
                due = now + interval
            await self.clock.sleep(due - now)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]  # Linux abstract namespace: a leading NUL byte, no file
    if value.startswith("/"):
        return value
    if value:
        # e.g. vsock: (systemd >= 253 in VMs): not something a host service is handed.
        log.warning(
            "ignoring NOTIFY_SOCKET=%r: only paths and @abstract names are supported", value
        )
    return None


def _status(text: str | None) -> list[str]:
    # One datagram field per line: a newline inside the text would start a bogus field.
    return [] if text is None else [f"STATUS={' '.join(text.splitlines())}"]
