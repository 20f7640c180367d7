"""`intmon run`: the process around the daemon.

Signals (SIGTERM/SIGINT stop gracefully, SIGHUP reloads), the HTTP server, systemd readiness
and watchdog, and the dead-man's switch. The daemon itself knows none of these.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import signal
import sys
from collections.abc import Callable, Mapping

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from monitor import __version__
from monitor.config.reload import ReloadPlan
from monitor.config.settings import Config
from monitor.config.web import TlsServerConfig
from monitor.core.clock import Clock
from monitor.core.errors import ConfigError, StorageError
from monitor.core.logs import setup_logging
from monitor.core.redact import Redactor
from monitor.engine.daemon import Daemon
from monitor.engine.runner import make_session
from monitor.metrics import Metrics
from monitor.ops.deadman import DeadMansSwitch
from monitor.ops.systemd import SystemdNotifier
from monitor.storage.store import Store
from monitor.web.server import build_app, serve
from monitor.web.tls import ServerTls

log = logging.getLogger("intmon")
EXIT_OK, EXIT_FAIL = 0, 1
# How long another thread may hold the interpreter before the event loop gets it back. The
# writer's batches and Apprise run in threads; at the default 5 ms a response that arrived
# meanwhile waits that long to be timed, which shows as latency the provider never had.
SWITCH_INTERVAL = 0.0005


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop `monitor.event_loop` asks for (asyncio's by default); `auto` takes uvloop
    when it is installed.

    The loop is chosen before it starts, so a reload cannot change it (it needs a restart)."""
    if choice != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if choice == "uvloop":  # the config check said it was there: a broken install
                raise
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def run_service(service: Service, choice: str) -> int:
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(service.run())


class Service:
    def __init__(
        self, config: Config, redactor: Redactor, clock: Clock, env: Mapping[str, str]
    ) -> None:
        self.metrics = Metrics()
        store = Store(config.monitor.database_url)
        self.daemon = Daemon(config, store, self.metrics, clock, redactor)
        self.clock = clock
        # A no-op unless systemd started us (Type=notify sets $NOTIFY_SOCKET).
        self.systemd = SystemdNotifier(env, clock)
        self._stop = asyncio.Event()
        self._reloads: set[asyncio.Task[None]] = set()
        self._deadman: tuple[asyncio.Task[None], aiohttp.ClientSession] | None = None
        tls = config.monitor.web.tls_server_config
        self.tls = ServerTls(tls) if tls is not None else None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        # Fed by a task on this loop, so a hung loop stops the pings and systemd restarts us.
        watchdog = asyncio.create_task(self.systemd.run_watchdog(), name="intmon-watchdog")
        try:
            return await self._serve()
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
            self.systemd.close()

    async def _serve(self) -> int:
        settings = self.daemon.config.monitor
        app = build_app(self.daemon, reload=self.reload)
        try:
            web_runner = await serve(
                app,
                settings.listen_host,
                settings.listen_port,
                self.tls.context if self.tls is not None else None,
            )
        except OSError as exc:
            log.error("cannot listen on %s: %s", settings.listen, exc.strerror or exc)
            return EXIT_FAIL
        try:
            await self.daemon.start()
        except (SQLAlchemyError, StorageError, OSError) as exc:
            log.error("cannot open the database %s: %s", settings.database, exc)
            await web_runner.cleanup()
            return EXIT_FAIL
        self._start_deadman()
        self.freeze_startup_objects()
        self.systemd.ready(status=self._status_line())
        scheme = "https" if self.tls is not None else "http"
        log.info("intmon %s serving on %s://%s/", __version__, scheme, settings.listen)
        await self._stop.wait()
        log.info("stopping: letting in-flight checks finish")
        self.systemd.stopping(status="stopping: letting in-flight checks finish")
        await self._stop_deadman()
        await asyncio.gather(*self._reloads, return_exceptions=True)
        await self.daemon.stop()
        await web_runner.cleanup()
        log.info("stopped")
        return EXIT_OK

    @staticmethod
    def freeze_startup_objects() -> None:
        """Move what start-up built (config models, per-check state, imported modules) out of
        the collector's reach: it lives as long as the process, and every full collection
        would otherwise walk it again, and write to the pages of memory it sits on."""
        gc.collect()
        gc.freeze()
        sys.setswitchinterval(SWITCH_INTERVAL)

    @staticmethod
    def refreeze() -> None:
        """After a reload: frozen objects it dropped that sit in reference cycles (config
        models do) would never be collected, so thaw, collect once, and freeze again."""
        gc.unfreeze()
        Service.freeze_startup_objects()

    def _status_line(self) -> str:
        config = self.daemon.config
        return f"watching {len(config.checks)} checks on {config.monitor.listen}"

    def _reload_on_signal(self) -> None:
        async def reload() -> None:
            try:
                await self.reload()
            except ConfigError:
                return  # already logged; the running config stays

        task = asyncio.create_task(reload(), name="intmon-reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> ReloadPlan:
        """SIGHUP and POST /-/reload. An invalid file raises ConfigError and changes nothing."""
        self.systemd.reloading()
        before = self.daemon.config.monitor
        try:
            change = await self.daemon.reload()
            self.refreeze()
        except ConfigError as exc:
            log.error("reload refused, the running config stays:\n%s", exc)
            self.systemd.ready(status=f"reload failed (old config running); {self._status_line()}")
            raise
        after = self.daemon.config.monitor
        if (before.log_level, before.log_format) != (after.log_level, after.log_format):
            setup_logging(after.log_level, after.log_format, self.daemon.redactor)
        self._reload_tls(after.web.tls_server_config)
        if (before.heartbeat_url, before.heartbeat_interval) != (
            after.heartbeat_url,
            after.heartbeat_interval,
        ):
            await self._stop_deadman()
            self._start_deadman()
        self.systemd.ready(status=self._status_line())
        return change

    def _reload_tls(self, config: TlsServerConfig | None) -> None:
        """Every reload reads the certificate files again: rotating them needs no restart."""
        if self.tls is not None:
            self.tls.reload(config)
        elif config is not None:
            log.warning("monitor.web.tls_server_config takes effect at the next restart")

    def _start_deadman(self) -> None:
        """Ping monitor.heartbeat_url every heartbeat_interval while the daemon is ready."""
        settings = self.daemon.config.monitor
        if settings.heartbeat_url is None:
            return
        # Its own session: a ping must not queue behind checks for the shared connection pool.
        session = make_session(1)
        switch = DeadMansSwitch(
            settings.heartbeat_url,
            settings.heartbeat_interval,
            session,
            self.clock,
            on_attempt=lambda result: self.metrics.heartbeat_pings.labels(result).inc(),
            healthy=lambda: self.daemon.ready,
        )
        self._deadman = asyncio.create_task(switch.run(), name="intmon-deadman"), session

    async def _stop_deadman(self) -> None:
        if self._deadman is not None:
            task, session = self._deadman
            self._deadman = None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await session.close()
