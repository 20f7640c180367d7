"""`intmon` command line. User errors print one clear message and exit 2, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from checks.base import CheckConfig, Result, RunContext
from monitor import __version__
from monitor.clock import SystemClock
from monitor.config import Config, load_config, resolve_config_path
from monitor.daemon import Daemon
from monitor.errors import ConfigError
from monitor.metrics import Metrics
from monitor.redact import Redactor
from monitor.runner import Runner, make_session
from monitor.sandbox import run_sandbox
from monitor.server import build_app, serve
from monitor.store import RunRow, SchemaError, Store
from monitor.units import format_duration

log = logging.getLogger("intmon")

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "sandbox":
        host, _, port = args.listen.rpartition(":")
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how the sandbox stops
            asyncio.run(run_sandbox(host, int(port)))
        return EXIT_OK
    try:
        config = load_config(resolve_config_path(args.config))
    except ConfigError as exc:
        print(f"invalid config:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    _setup_logging(config)
    handler = {"run": cmd_run, "check": cmd_check, "validate": cmd_validate, "status": cmd_status}
    return handler[args.command](config, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="intmon", description="Integration health monitor.")
    parser.add_argument("--version", action="version", version=f"intmon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument(
            "--config",
            help="config file (default: $INTMON_CONFIG, then config/monitor.yaml)",
        )
        return p

    command("run", "run the daemon until SIGTERM/SIGINT")
    check = command("check", "run checks once and print a table; exit 1 if any fails")
    check.add_argument("names", nargs="*", metavar="NAME", help="checks to run (default: all)")
    command("validate", "validate the config and its ${ENV} references")
    status = command("status", "current health of every check, from the database")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sandbox = sub.add_parser("sandbox", help="serve the bundled imitation third-party API")
    sandbox.add_argument(
        "--listen", default="127.0.0.1:8765", help="host:port (default %(default)s)"
    )
    return parser


def _setup_logging(config: Config) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        Redactor(config.secrets).formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.monitor.log_level.upper())
    # aiohttp logs each failed request at ERROR with a traceback; our results already say it.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def cmd_validate(config: Config, args: argparse.Namespace) -> int:
    print(f"{config.source}: ok ({len(config.checks)} checks, {len(config.notifiers)} notifiers)")
    return EXIT_OK


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    return asyncio.run(_run(config))


async def _run(config: Config) -> int:
    metrics = Metrics()
    daemon = Daemon(config, Store(config.monitor.database_url), metrics, SystemClock())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    settings = config.monitor
    try:
        web_runner = await serve(build_app(daemon), settings.listen_host, settings.listen_port)
    except OSError as exc:
        log.error("cannot listen on %s: %s", settings.listen, exc.strerror or exc)
        return EXIT_FAIL
    try:
        await daemon.start()
    except (SQLAlchemyError, SchemaError, OSError) as exc:
        log.error("cannot open the database %s: %s", settings.database, exc)
        await web_runner.cleanup()
        return EXIT_FAIL
    log.info("intmon %s serving on http://%s/", __version__, settings.listen)
    await stop.wait()
    log.info("stopping: letting in-flight checks finish")
    await daemon.stop()
    await web_runner.cleanup()
    log.info("stopped")
    return EXIT_OK


def cmd_check(config: Config, args: argparse.Namespace) -> int:
    unknown = [n for n in args.names if n not in {c.name for c in config.checks}]
    if unknown:
        print(f"no check named {', '.join(unknown)} in {config.source}", file=sys.stderr)
        return EXIT_CONFIG
    selected = [c for c in config.checks if not args.names or c.name in args.names]
    results = asyncio.run(_check_once(config, selected))
    rows = [
        [
            check.name,
            "PASS" if result.ok else "FAIL",
            str(result.status or "-"),
            format_duration(result.latency or 0),
            result.error_class or "",
            result.reason,
        ]
        for check, result in zip(selected, results, strict=True)
    ]
    print(_table(["CHECK", "RESULT", "STATUS", "LATENCY", "ERROR", "REASON"], rows))
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAIL


async def _check_once(config: Config, checks: list[CheckConfig]) -> list[Result]:
    async with make_session(config.monitor.concurrency) as session:
        ctx = RunContext(session, SystemClock(), Redactor(config.secrets), f"intmon/{__version__}")
        runner = Runner(ctx, config.monitor.concurrency, config.monitor.per_host_concurrency)
        return list(await asyncio.gather(*(runner.execute(c) for c in checks)))


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    store = Store(config.monitor.database_url)
    try:
        store.open()
        latest = store.latest_runs()
    except (SQLAlchemyError, SchemaError) as exc:
        print(f"cannot read the database {config.monitor.database}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    finally:
        store.close()
    if args.json:
        entries = [_status_entry(c.name, latest.get(c.name)) for c in config.checks]
        print(json.dumps({"checks": entries}, indent=2))
        return EXIT_OK
    now = SystemClock().time()
    rows: list[list[object]] = []
    for check in config.checks:
        row = latest.get(check.name)
        if row is None:
            rows.append([check.name, "UNKNOWN", "never"])
            continue
        rows.append(
            [
                check.name,
                "UP" if row.ok else "DOWN",
                f"{format_duration(now - row.ts)} ago",
                row.status or "-",
                format_duration(row.latency) if row.latency is not None else "-",
                row.error_class or "",
                row.reason,
            ]
        )
    print(_table(["CHECK", "STATE", "LAST RUN", "STATUS", "LATENCY", "ERROR", "REASON"], rows))
    return EXIT_OK


def _status_entry(name: str, row: RunRow | None) -> dict[str, object]:
    if row is None:
        return {"name": name, "state": "unknown", "last": None}
    last = row.model_dump(exclude={"id", "check", "signals"})
    return {"name": name, "state": "up" if row.ok else "down", "last": last}


def _table(header: list[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [header, *[[str(c) for c in row] + [""] * (len(header) - len(row)) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )
