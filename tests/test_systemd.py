"""sd_notify against real AF_UNIX datagram sockets, the way systemd listens for them."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.core.clock import FakeClock, SystemClock
from monitor.ops.systemd import SystemdNotifier
from tests.waiting import eventually

HALF_MINUTE_USEC = "30000000"  # WatchdogSec=30s


class SteppedClock(FakeClock):
    """`sleep` records what was asked and parks until the test calls `step`."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []
        self._released: asyncio.Queue[float] = asyncio.Queue()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        late = await self._released.get()
        self.advance(seconds + late)

    def step(self, late: float = 0.0) -> None:
        """Let the sleeper wake, `late` seconds after it asked to."""
        self._released.put_nowait(late)


def _receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    return sock


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """What systemd does for Type=notify: a datagram socket; yields it and its path."""
    path = str(tmp_path / "notify.sock")
    sock = _receiver(path)
    yield sock, path
    sock.close()


async def recv(sock: socket.socket) -> str:
    data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), 5)
    return data.decode()


def pending(sock: socket.socket) -> list[str]:
    """Every datagram already queued on the socket, without waiting."""
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


async def test_it_tells_systemd_it_is_ready_and_then_stopping(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path}, FakeClock())
    assert notifier.ready(status="watching 3 checks")
    assert await recv(sock) == "READY=1\nSTATUS=watching 3 checks"
    assert notifier.status("2 checks failing")
    assert await recv(sock) == "STATUS=2 checks failing"
    assert notifier.stopping()
    assert await recv(sock) == "STOPPING=1"
    notifier.close()


async def test_it_reaches_an_abstract_namespace_socket() -> None:
    name = f"intmon-test-{uuid.uuid4().hex}"
    sock = _receiver("\0" + name)
    try:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name}, FakeClock())
        assert notifier.ready()
        assert await recv(sock) == "READY=1"
        notifier.close()
    finally:
        sock.close()


async def test_a_reload_is_stamped_with_the_monotonic_clock(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    clock = FakeClock()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path}, clock)
    notifier.reloading()
    assert await recv(sock) == f"RELOADING=1\nMONOTONIC_USEC={int(clock.monotonic() * 1e6)}"
    notifier.close()


async def test_a_multi_line_status_stays_one_field(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path}, FakeClock())
    notifier.status("reload failed:\nchecks[2].interval: bad")
    assert await recv(sock) == "STATUS=reload failed: checks[2].interval: bad"
    notifier.close()


async def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = SystemdNotifier({"WATCHDOG_USEC": HALF_MINUTE_USEC}, FakeClock())
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert not notifier.ready()
    assert not notifier.stopping()
    # Returns at once instead of looping: nobody is listening for pings.
    await asyncio.wait_for(notifier.run_watchdog(), 1)


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": HALF_MINUTE_USEC}, 15.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "4242"}, 1.0),
        ({"WATCHDOG_USEC": HALF_MINUTE_USEC, "WATCHDOG_PID": "1"}, None),
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
    ids=["half-of-usec", "pid-is-ours", "pid-is-someone-elses", "no-watchdog", "zero", "garbage"],
)
def test_the_watchdog_interval_is_half_the_period_when_it_is_meant_for_us(
    env: dict[str, str], interval: float | None, tmp_path: Path
) -> None:
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), **env}, FakeClock(), pid=4242
    )
    assert notifier.watchdog_interval == interval


async def test_watchdog_pings_come_every_half_period(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    clock = SteppedClock()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": HALF_MINUTE_USEC}, clock)
    task = asyncio.create_task(notifier.run_watchdog())
    times = []
    for _ in range(4):
        assert await recv(sock) == "WATCHDOG=1"
        times.append(clock.monotonic())
        clock.step()
    assert [b - a for a, b in itertools.pairwise(times)] == [15.0, 15.0, 15.0]
    assert clock.sleeps[:4] == [15.0] * 4
    task.cancel()
    notifier.close()


async def test_a_late_wake_up_shortens_the_next_sleep_instead_of_drifting(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    clock = SteppedClock()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": HALF_MINUTE_USEC}, clock)
    task = asyncio.create_task(notifier.run_watchdog())
    await recv(sock)
    clock.step(late=4.0)
    await recv(sock)
    assert clock.sleeps == [15.0, 11.0]
    # Held up for longer than a period: one ping on waking, then the normal cadence, no burst.
    clock.step(late=40.0)
    assert await recv(sock) == "WATCHDOG=1"
    assert pending(sock) == []
    assert clock.sleeps == [15.0, 11.0, 15.0]
    task.cancel()
    notifier.close()


async def test_a_blocked_event_loop_sends_no_pings(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    # A 20 ms watchdog: a ping every 10 ms for as long as the loop runs the task.
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000", "WATCHDOG_PID": str(os.getpid())}
    notifier = SystemdNotifier(env, SystemClock())
    task = asyncio.create_task(notifier.run_watchdog())
    assert await recv(sock) == "WATCHDOG=1"
    pending(sock)
    # The hang itself: twenty watchdog intervals during which the loop runs nothing. Pings
    # from a thread would pile up on the socket meanwhile; pings from the loop cannot.
    time.sleep(0.2)  # noqa: ASYNC251 - blocking the loop is what this test is about
    assert pending(sock) == []
    assert await recv(sock) == "WATCHDOG=1"  # and they resume once the loop does
    task.cancel()
    notifier.close()


async def test_an_unhealthy_daemon_stops_feeding_the_watchdog(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    clock = SteppedClock()
    healthy = True
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": HALF_MINUTE_USEC}, clock, healthy=lambda: healthy
    )
    task = asyncio.create_task(notifier.run_watchdog())
    await recv(sock)
    healthy = False
    for _ in range(3):
        clock.step()
    await eventually(
        "three more rounds", lambda: len(clock.sleeps) == 4, poll=0
    )  # the loop went round three more times ...
    assert pending(sock) == []  # ... without a ping
    healthy = True
    clock.step()
    assert await recv(sock) == "WATCHDOG=1"
    task.cancel()
    notifier.close()


def test_a_missing_socket_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}, FakeClock())
    with caplog.at_level(logging.WARNING, logger="monitor.ops.systemd"):
        assert not notifier.ready()
        assert not notifier.ping_watchdog()
    assert [r.getMessage() for r in caplog.records] == [
        "cannot notify systemd at $NOTIFY_SOCKET: No such file or directory"
    ]
    notifier.close()


def test_an_unsupported_socket_address_disables_notification(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="monitor.ops.systemd"):
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"}, FakeClock())
    assert not notifier.enabled
    assert "only paths and @abstract names" in caplog.text
