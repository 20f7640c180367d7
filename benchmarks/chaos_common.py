"""What every `make chaos` scenario uses: a real `intmon run` child, loopback targets, a receiver.

The daemon is a child process in its own process group that dies with the suite
(PR_SET_PDEATHSIG); targets and the notification receiver are aiohttp servers in the suite's own
event loop, bound to 127.0.0.1 port 0. Nothing here talks to anything but loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from harness import child_env, free_port, rss_bytes

REPO = Path(__file__).resolve().parent.parent
INTMON = Path(sys.executable).with_name("intmon")
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for tests.receiver: one receiver for the tests and chaos

from tests.receiver import Receiver  # noqa: E402

PR_SET_PDEATHSIG = 1


class ChaosError(RuntimeError):
    """The harness itself could not do its job (a child would not start); not a broken
    guarantee, which a scenario reports as a failed figure instead."""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the suite is SIGKILLed, so is the daemon.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


async def start_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve `app` on 127.0.0.1, port 0; (runner, base URL)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@dataclass
class TimedReceiver(Receiver):
    """The tests' json:// receiver, also noting when each post arrived (monotonic seconds)."""

    arrivals: list[float] = field(default_factory=list)

    async def _hook(self, request: web.Request) -> web.Response:
        answer = await super()._hook(request)
        if answer.status == 200:
            self.arrivals.append(time.monotonic())
        return answer


def post_id(post: dict[str, Any]) -> str:
    """What tells two notifications apart: the stable notification id when the message has one
    (a field of the json:// payload, or `id: …` in the body), else title and body."""
    for key in ("id", "notification_id", "notification-id"):
        if post.get(key):
            return f"id:{post[key]}"
    for line in str(post.get("message", "")).splitlines():
        head, sep, value = line.partition(":")
        if sep and head.strip().lower() in {"id", "notification id", "notification-id"}:
            return f"id:{value.strip()}"
    return f"text:{post.get('title')}\n{post.get('message')}"


def has_stable_id(post: dict[str, Any]) -> bool:
    return post_id(post).startswith("id:")


@dataclass
class Intmon:
    """One `intmon run` child on a config file; start it again after a kill with `start`."""

    workdir: Path
    config_text: str = ""
    port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    peak_rss: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.workdir / "monitor.yaml"

    @property
    def log(self) -> Path:
        return self.workdir / "intmon.log"

    def write_config(self, body: str) -> None:
        """`body` is every section but `monitor:`, which this adds (database, listen)."""
        self.config_text = (
            f"monitor: {{database: '{self.workdir / 'monitor.db'}',"
            f" listen: '127.0.0.1:{self.port}', shutdown_grace: 2s}}\n{body}"
        )
        self.config.write_text(self.config_text)

    async def start(self, ready_within: float = 30.0) -> float:
        """Start the daemon and wait for /readyz; seconds it took."""
        started = time.monotonic()
        await self.spawn()
        return await self.ready(started, ready_within)

    async def spawn(self) -> None:
        """Start the daemon without waiting for it."""
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                str(INTMON),
                "run",
                "--config",
                str(self.config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=child_env(),
                start_new_session=True,
                # prctl only: nothing that could deadlock on a lock held by another thread.
                preexec_fn=_die_with_parent,
            )
        self.starts += 1

    async def ready(self, started: float, within: float) -> float:
        """Wait for /readyz; seconds since `started` (monotonic)."""
        assert self.proc is not None
        async with aiohttp.ClientSession() as client:
            while time.monotonic() - started < within:
                if self.proc.returncode is not None:
                    raise ChaosError(f"intmon exited with {self.proc.returncode}:\n{self.tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with client.get(self.url + "/readyz") as response:
                        if response.status == 200:
                            return time.monotonic() - started
                await asyncio.sleep(0.05)
        raise ChaosError(f"intmon not ready within {within:.0f} s:\n{self.tail()}")

    def sample_rss(self) -> int:
        if self.proc is not None and self.proc.returncode is None:
            self.peak_rss = max(self.peak_rss, rss_bytes([self.proc.pid]))
        return self.peak_rss

    def peak_rss_kernel(self) -> int:
        """VmHWM: the kernel's own high-water mark of the child's RSS, while it lives."""
        if self.proc is None:
            return 0
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0

    async def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would."""
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()

    async def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM (the graceful stop); SIGKILL after `grace`. The exit code."""
        if self.proc is None or self.proc.returncode is not None:
            return None if self.proc is None else self.proc.returncode
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), grace)
        except TimeoutError:
            await self.kill()
            return None

    async def get(self, path: str) -> str:
        async with (
            aiohttp.ClientSession() as client,
            client.get(self.url + path, timeout=aiohttp.ClientTimeout(total=10)) as response,
        ):
            return await response.text()

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")
        return ""


async def wait_until(predicate: Callable[[], bool], within: float, step: float = 0.05) -> bool:
    """Poll `predicate` for at most `within` seconds; whether it came true."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


@dataclass
class Figure:
    """One printed figure: its name, the value as text, and whether it keeps its guarantee
    (None: reported only, no guarantee rests on it)."""

    name: str
    value: str
    ok: bool | None = None


@dataclass
class Outcome:
    scenario: str
    figures: list[Figure] = field(default_factory=list)
    error: str | None = None  # the scenario could not run to the end

    def add(self, name: str, value: object, ok: bool | None = None) -> None:
        self.figures.append(Figure(name, str(value), ok))
        mark = "" if ok is None else ("  ok" if ok else "  BROKEN")
        print(f"  {name:<50} {value}{mark}", flush=True)

    @property
    def ok(self) -> bool:
        return self.error is None and all(f.ok is not False for f in self.figures)
