"""The `intmon` argument parser: every subcommand, option and help text.

Argument types check values while parsing, so a typo gets argparse's usage message (exit 2)
rather than a traceback."""

from __future__ import annotations

import argparse

from monitor import __version__
from monitor.config.web import MAX_COST, MIN_COST


def build_parser() -> argparse.ArgumentParser:
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
