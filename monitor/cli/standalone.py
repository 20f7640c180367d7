"""Subcommands that need no config: `hash-password`, `sandbox` and `db copy`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import sys

from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from monitor.cli.common import EXIT_CONFIG, EXIT_OK, table
from monitor.core.errors import IntmonError, StorageError
from monitor.core.redact import redact
from monitor.core.units import format_duration
from monitor.sandbox import run_sandbox
from monitor.storage.backend import database_url, engine_url, shown
from monitor.storage.copy import copy_database
from monitor.web.passwords import hash_password


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
    print(table(["TABLE", "ROWS"], [[t, f"{n:,}"] for t, n in report.rows.items()]))
    if report.left_out:
        print(f"not copied (unknown to this intmon): {', '.join(report.left_out)}")
    total = sum(report.rows.values())
    print(
        f"copied {total:,} rows from {report.source} into {report.target} in "
        f"{format_duration(report.seconds)}; every table's row count matches"
    )
    return EXIT_OK
