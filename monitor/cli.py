"""`intmon` command line.

User errors print one clear message, never a traceback, and exit 2 for a config or a command
line intmon cannot use, 1 for the rest (an `IntmonError`, such as a database it cannot open).
Any other exception is a bug: it keeps its traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import getpass
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from pydantic import MISSING
from sqlalchemy import inspect, make_url
from sqlalchemy.exc import SQLAlchemyError

from checks.base import CheckConfig, Result, RunContext
from monitor import __version__
from monitor.alerting.notify import Notify
from monitor.alerting.outbox import AlertStateRow, load_states
from monitor.alerting.silences import add_silence, expire_silence, list_silences
from monitor.config.envfile import read_env_file
from monitor.config.loader import load_config, resolve_config_path
from monitor.config.settings import Config
from monitor.config.web import MAX_COST, MIN_COST
from monitor.core.clock import SystemClock
from monitor.core.errors import ConfigError, IntmonError, StorageError
from monitor.core.logs import setup_logging
from monitor.core.redact import Redactor, redact
from monitor.core.units import DAY, format_duration, parse_duration
from monitor.engine.daemon import Daemon
from monitor.engine.runner import Runner, make_session
from monitor.engine.shapes import accept_now, restore_tracker
from monitor.engine.status import CheckStatus
from monitor.metrics import Metrics
from monitor.sandbox import run_sandbox
from monitor.service import Service, run_service
from monitor.signals.headers import Quota
from monitor.signals.shapes import ShapeTracker
from monitor.storage.backend import database_url, engine_url, shown
from monitor.storage.copy import copy_database
from monitor.storage.shapes import load_shape, save_accepted
from monitor.storage.store import Store
from monitor.web.passwords import hash_password

log = logging.getLogger("intmon")

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _command(args)
    except ConfigError as exc:
        print(f"invalid config:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    except IntmonError as exc:
        # Only intmon's own errors: anything else is a bug and must keep its traceback.
        print(exc, file=sys.stderr)
        return EXIT_FAIL


def _command(args: argparse.Namespace) -> int:
    if args.command == "sandbox":
        return cmd_sandbox(args)
    if args.command == "hash-password":
        return cmd_hash_password(args)
    if args.command == "db":
        return cmd_db_copy(args)  # its only subcommand; needs no config, only the two URLs
    env = dict(os.environ)
    if getattr(args, "env_file", None):
        env.update(_env_file(args.env_file))
    # status and silence only read and write the database: check and notifier secrets may be
    # missing from their shell.
    secrets_needed = args.command not in ("status", "silence", "schema")
    config = load_config(resolve_config_path(args.config), env, secrets_needed=secrets_needed)
    redactor = Redactor(config.secrets)
    setup_logging(config.monitor.log_level, config.monitor.log_format, redactor)
    if args.command == "run":
        return cmd_run(config, args, redactor)
    handler = {
        "check": cmd_check,
        "validate": cmd_validate,
        "status": cmd_status,
        "notify-test": cmd_notify_test,
        "silence": cmd_silence,
        "schema": cmd_schema,
    }
    return handler[args.command](config, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="intmon", description="Integration health monitor.")
    parser.add_argument("--version", action="version", version=f"intmon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, env_file: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument(
            "--config",
            help="config file (default: $INTMON_CONFIG, then config/monitor.yaml)",
        )
        if env_file:
            p.add_argument(
                "--env-file",
                metavar="FILE",
                help="read ${NAME}s from this systemd EnvironmentFile too (it wins over the "
                "environment)",
            )
        return p

    command("run", "run the daemon until SIGTERM/SIGINT", env_file=False)
    check = command("check", "run checks once and print a table; exit 1 if any fails")
    check.add_argument("names", nargs="*", metavar="NAME", help="checks to run (default: all)")
    command("validate", "validate the config and its ${ENV} references")
    status = command("status", "current health of every check, from the database")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    notify = command("notify-test", "send a test notification; exit 1 if not delivered")
    notify.add_argument("notifier", nargs="?", help="notifier name (default: all)")
    silence = command("silence", "silence alerts of matching checks (they are tracked, not sent)")
    silence.add_argument("pattern", nargs="?", help="check name or glob, e.g. 'stripe-*'")
    silence.add_argument("--for", dest="duration", default="1h", help="how long (default 1h)")
    silence.add_argument("--comment", default="", help="why, for the people who come after")
    silence.add_argument("--list", action="store_true", help="list active silences")
    silence.add_argument("--expire", type=_silence_id, metavar="ID", help="end silence ID now")
    schema = command(
        "schema", "the response shape a check learned and its drift; exit 1 if drifted"
    )
    schema.add_argument("name", metavar="CHECK", help="the check whose shape to show")
    schema.add_argument(
        "--accept", action="store_true", help="take the last response's shape as the learned one"
    )
    hashing = sub.add_parser(
        "hash-password",
        help="print a bcrypt hash for monitor.web.basic_auth_users (password from stdin or a "
        "prompt)",
    )
    hashing.add_argument(
        "--cost", type=_bcrypt_cost, default=12, help="bcrypt cost, 4..31 (default %(default)s)"
    )
    db = sub.add_parser("db", help="the database itself: copy its history into another")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    copy = db_commands.add_parser(
        "copy",
        help="copy every table of one database into another (an SQLite file into Postgres)",
        description="Copy all history, alert state, outbox, silences and heartbeats of one "
        "intmon database into another, in one transaction, keeping ids, then compare every "
        "table's row count. Stop intmon first. Give a password through $PGPASSWORD rather "
        "than in a URL.",
    )
    copy.add_argument(
        "--from", dest="source", required=True, metavar="URL_OR_PATH",
        help="the database to copy: an SQLite file or a URL (opened read-only)",
    )  # fmt: skip
    copy.add_argument(
        "--to", dest="target", required=True, metavar="URL",
        help="the database to copy into, e.g. postgresql://intmon@db.internal/intmon "
        "(its tables are created first)",
    )  # fmt: skip
    copy.add_argument(
        "--force", action="store_true", help="replace the history the target already holds"
    )
    sandbox = sub.add_parser("sandbox", help="serve the bundled imitation third-party API")
    sandbox.add_argument(
        "--listen",
        default="127.0.0.1:8765",
        type=_host_port,
        help="host:port (default %(default)s)",
    )
    return parser


def _env_file(file: str) -> dict[str, str]:
    loaded = read_env_file(file)
    for line, name in loaded.ignored:
        # systemd skips these lines as well; saying so beats a later "is not set".
        print(f"{file}:{line}: ignored: {name!r} is not a variable name", file=sys.stderr)
    return loaded.values


def _silence_id(value: str) -> int:
    # Beyond SQLite's 64-bit integers the driver raises OverflowError instead of finding nothing.
    if not value.isdigit() or int(value) >= 2**63:
        raise argparse.ArgumentTypeError(f"{value!r} is not a silence id (see --list)")
    return int(value)


def _host_port(value: str) -> str:
    """Checked while parsing, so a typo gets argparse's usage message rather than a traceback."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not host:port (e.g. 127.0.0.1:8765)")
    return value


def _bcrypt_cost(value: str) -> int:
    if not value.isdigit() or not MIN_COST <= int(value) <= MAX_COST:
        raise argparse.ArgumentTypeError(f"{value!r} is not a bcrypt cost ({MIN_COST}..{MAX_COST})")
    return int(value)


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Never an argument: a password on the command line ends up in shell history and `ps`."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return EXIT_CONFIG
    else:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        print("an empty password protects nothing", file=sys.stderr)
        return EXIT_CONFIG
    try:
        print(hash_password(password, args.cost))
    except ValueError as exc:  # longer than bcrypt takes
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def cmd_sandbox(args: argparse.Namespace) -> int:
    host, _, port = args.listen.rpartition(":")
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how the sandbox stops
            asyncio.run(run_sandbox(host, int(port)))
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise IntmonError(f"cannot listen on {args.listen}: {exc.strerror or exc}") from exc
    return EXIT_OK


def cmd_db_copy(args: argparse.Namespace) -> int:
    for option, url in (("--from", args.source), ("--to", args.target)):
        try:
            engine_url(url)
        except StorageError as exc:
            print(f"{option}: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    # Written into a URL on the command line, a password must still not be repeated.
    passwords = [make_url(database_url(u)).password for u in (args.source, args.target)]
    secrets = [str(p) for p in passwords if p]
    try:
        report = copy_database(
            args.source,
            args.target,
            force=args.force,
            on_table=lambda table, rows: print(f"copied {table}: {rows:,} rows", file=sys.stderr),
        )
    except (SQLAlchemyError, StorageError) as exc:
        problem = f"cannot copy {shown(args.source)} into {shown(args.target)}: {exc}"
        raise StorageError(redact(problem, secrets)) from exc
    print(_table(["TABLE", "ROWS"], [[t, f"{n:,}"] for t, n in report.rows.items()]))
    if report.left_out:
        print(f"not copied (unknown to this intmon): {', '.join(report.left_out)}")
    total = sum(report.rows.values())
    print(
        f"copied {total:,} rows from {report.source} into {report.target} in "
        f"{format_duration(report.seconds)}; every table's row count matches"
    )
    return EXIT_OK


def cmd_validate(config: Config, args: argparse.Namespace) -> int:
    print(f"{config.source}: ok ({len(config.checks)} checks, {len(config.notifiers)} notifiers)")
    return EXIT_OK


def cmd_run(config: Config, args: argparse.Namespace, redactor: Redactor) -> int:
    service = Service(config, redactor, SystemClock(), os.environ)
    return run_service(service, config.monitor.event_loop)


def cmd_check(config: Config, args: argparse.Namespace) -> int:
    unknown = [n for n in args.names if n not in {c.name for c in config.checks}]
    if unknown:
        print(f"no check named {', '.join(unknown)} in {config.source}", file=sys.stderr)
        return EXIT_CONFIG
    selected = [c for c in config.checks if not args.names or c.name in args.names]
    results = asyncio.run(_check_once(config, selected))
    now = SystemClock().time()
    rows = [_check_row(c.name, r, now) for c, r in zip(selected, results, strict=True)]
    header = ["CHECK", "RESULT", "STATUS", "LATENCY", "QUOTA", "SUNSET", "REQUEST ID", "ERROR"]
    print(_table([*header, "REASON"], rows))
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAIL


def _check_row(name: str, result: Result, now: float) -> list[object]:
    signals = result.signals
    sunset = signals.get("sunset")
    left = max(0.0, sunset - now) if isinstance(sunset, int | float) else None
    return [
        name,
        "PASS" if result.ok else "FAIL",
        result.status or "-",
        format_duration(result.latency or 0),
        _quota_cell(signals.get("quota_remaining"), signals.get("quota_limit")),
        _sunset_cell(bool(signals.get("deprecated")), left),
        result.request_id or "-",
        result.error_class or "",
        result.reason,
    ]


async def _check_once(config: Config, checks: list[CheckConfig]) -> list[Result]:
    concurrency = config.monitor.concurrency
    async with make_session(concurrency) as session, make_session(concurrency, True) as kept:
        ctx = RunContext(
            session, SystemClock(), Redactor(config.secrets), f"intmon/{__version__}",
            kept_alive=kept,
        )  # fmt: skip
        runner = Runner(ctx, config.monitor.concurrency, config.monitor.per_host_concurrency)
        results = await asyncio.gather(*(runner.execute(c) for c in checks))
        return [r for r in results if r is not None]  # nothing refuses a one-shot run


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    """The same view as /api/status, rebuilt from the database by a daemon that never starts.

    Read-only: a daemon may be writing, and a look must never create, upgrade or vacuum."""
    store = Store(config.monitor.database_url, read_only=True)
    daemon = Daemon(config, store, Metrics(), SystemClock())
    try:
        with _database(config, "read"):
            daemon.store.open()
            daemon.restore()
            # Firing alerts make a passing check degraded, as in the daemon; the table is
            # there once the daemon has run (an older database may not have it yet).
            if inspect(store.engine).has_table(AlertStateRow.__tablename__):
                daemon.alerter.book.replace_all(load_states(store.engine))
    finally:
        daemon.store.close()
        daemon.alerter.notify.close()
    report = daemon.status()
    if args.json:
        # The checks of /api/status, without its `generated_at`: the shape this always printed.
        print(json.dumps(report.model_dump(mode="json", include={"checks"}), indent=2))
        return EXIT_OK
    firing: dict[str, list[str]] = {}
    for f in daemon.alerter.firing():
        firing.setdefault(f.check, []).append(f"{f.rule} {f.severity}")
    rows = [
        _status_row(check, report.generated_at, firing.get(check.name, ()))
        for check in report.checks
    ]
    header = ["CHECK", "STATE", "LAST RUN", "ERR RATE", "P95", "429s", "QUOTA", "SUNSET"]
    print(_table([*header, "FRESHNESS", "ALERTS", "REQUEST ID", "REASON"], rows))
    return EXIT_OK


def _status_row(check: CheckStatus, now: float, alerts: Sequence[str] = ()) -> list[object]:
    last, metrics = check.last, check.metrics
    rate, p95 = metrics.error_rate, metrics.latency_p95
    deprecation = metrics.deprecation
    active = deprecation is not MISSING and deprecation.active
    left = None
    if deprecation is not MISSING and deprecation.days_to_sunset is not MISSING:
        left = deprecation.days_to_sunset * DAY
    state = check.state.upper()
    if check.until is not None:
        state += f" ({format_duration(check.until - now, coarse=True)} left)"
    age = metrics.freshness_age
    return [
        check.name,
        state,
        f"{format_duration(now - last.ts, coarse=True)} ago" if last else "never",
        f"{rate:.1%}" if rate is not None else "-",
        format_duration(p95) if p95 is not None else "-",
        metrics.rate_limited_15m,
        _quota(metrics.quota),
        _sunset_cell(active, left),
        "-" if age is MISSING else format_duration(age, coarse=True),
        ", ".join(alerts) or "-",
        (last.request_id if last else None) or "-",
        check.state_reason or "",
    ]


def _quota(quota: Quota | MISSING) -> str:
    return "-" if quota is MISSING else _quota_cell(quota.remaining, quota.limit)


def _quota_cell(remaining: object, limit: object) -> str:
    # A limit without a remaining count says nothing about what is left.
    if not isinstance(remaining, int | float) or not isinstance(limit, int | float) or not limit:
        return "-"
    return f"{remaining:g}/{limit:g}"


def _sunset_cell(deprecated: bool, left: float | None) -> str:
    """Time left to an announced sunset, `deprecated` without a date, `-` when neither."""
    if not deprecated:
        return "-"
    return "deprecated" if left is None else format_duration(left, coarse=True)


def cmd_notify_test(config: Config, args: argparse.Namespace) -> int:
    names = [n.name for n in config.notifiers]
    if args.notifier is not None and args.notifier not in names:
        print(f"no notifier named {args.notifier} in {config.source}", file=sys.stderr)
        return EXIT_CONFIG
    if not names:
        print(f"{config.source} has no notifiers", file=sys.stderr)
        return EXIT_FAIL
    selected = [args.notifier] if args.notifier else names
    results = asyncio.run(_notify_test(config, selected))
    for name, ok in zip(selected, results, strict=True):
        print(f"{name}: {'delivered' if ok else 'NOT delivered'}")
    return EXIT_OK if all(results) else EXIT_FAIL


async def _notify_test(config: Config, names: list[str]) -> list[bool]:
    notify = Notify(config.notifiers, Redactor(config.secrets), config.alerting)
    try:
        return [await notify.test(name) for name in names]
    finally:
        notify.close()


def cmd_silence(config: Config, args: argparse.Namespace) -> int:
    store = Store(config.monitor.database_url)
    now = SystemClock().time()
    # Direct writes: another process than the daemon's, so its writer is not here to use.
    with _database(config, "use"), contextlib.closing(store):
        store.open()
        if args.expire is not None:
            if not expire_silence(store.engine, args.expire, now):
                print(f"no active silence {args.expire}", file=sys.stderr)
                return EXIT_FAIL
            print(f"silence {args.expire} ended")
        elif args.list or args.pattern is None:
            rows = [
                [r.id, r.pattern, f"{format_duration(r.until - now)} left", r.comment]
                for r in list_silences(store.engine, now)
            ]
            print(_table(["ID", "PATTERN", "ENDS", "COMMENT"], rows))
        else:
            try:
                seconds = _silence_length(args.duration)
            except ValueError as exc:
                print(f"--for: {exc}", file=sys.stderr)
                return EXIT_CONFIG
            row = add_silence(store.engine, args.pattern, now + seconds, now, args.comment)
            matched = [c.name for c in config.checks if fnmatch.fnmatchcase(c.name, args.pattern)]
            print(
                f"silence {row.id}: {args.pattern} for {format_duration(seconds)} "
                f"({len(matched)} checks match)"
            )
    return EXIT_OK


def cmd_schema(config: Config, args: argparse.Namespace) -> int:
    if args.name not in {c.name for c in config.checks}:
        print(f"no check named {args.name} in {config.source}", file=sys.stderr)
        return EXIT_CONFIG
    # Printing only reads (a daemon may be writing); accepting writes from this process, as
    # `intmon silence` does, and the daemon takes it up at the check's next run.
    store = Store(config.monitor.database_url, read_only=not args.accept)
    tracker = ShapeTracker()
    with _database(config, "use" if args.accept else "read"), contextlib.closing(store):
        store.open()
        row = load_shape(store.engine, args.name)
        if row is not None:
            restore_tracker(tracker, row)
        if args.accept:
            accepted = accept_now(tracker, SystemClock().time())
            if accepted is None:
                print(f"{args.name} has answered no JSON body yet: nothing to accept")
                return EXIT_FAIL
            save_accepted(store.engine, args.name, *accepted)
            print(f"{args.name}: the last response's shape is the learned one now")
    if tracker.learned is None:
        print(f"{args.name}: no response shape learned yet (no JSON body seen)")
        return EXIT_FAIL
    print(_shape_text(args.name, tracker))
    return EXIT_FAIL if tracker.drift is not None and tracker.drift.drifted else EXIT_OK


def _shape_text(name: str, tracker: ShapeTracker) -> str:
    status = tracker.status()
    learned = tracker.learned
    assert learned is not None
    head = f"{name}: {status.state} (learned from {status.learned_from} bodies, "
    head += f"{status.fields} paths{', truncated' if status.truncated else ''})"
    diff = [f"  {line}" for line in (*status.changes, *status.new_fields)]
    rows = [[p, f.shown(), "optional" if f.optional else ""] for p, f in learned.fields.items()]
    return "\n".join([head, *diff, "", _table(["PATH", "TYPES", "PRESENCE"], rows)])


def _silence_length(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:  # add_silence refuses a silence that has already ended
        raise ValueError(f"{text!r} is not longer than zero")
    return seconds


@contextlib.contextmanager
def _database(config: Config, doing: str) -> Iterator[None]:
    """A database the user pointed us at that cannot be used (a path, a server, a newer schema)
    is theirs to fix, not a bug: say which database, without a traceback."""
    try:
        yield
    except (SQLAlchemyError, StorageError) as exc:
        message = f"cannot {doing} the database {config.monitor.database}: {exc}"
        # The URL may carry a password, written literally or through ${ENV}.
        raise StorageError(redact(message, config.secrets)) from exc


def _table(header: list[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [header, *[[str(c) for c in row] + [""] * (len(header) - len(row)) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )
