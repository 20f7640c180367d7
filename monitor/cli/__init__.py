"""`intmon` command line.

User errors print one clear message, never a traceback, and exit 2 for a config or a command
line intmon cannot use, 1 for the rest (an `IntmonError`, such as a database it cannot open).
Any other exception is a bug: it keeps its traceback.

This module reads the command line, loads the config and hands it to the subcommand: the
parser is in `parser`, the subcommands by concern in `run`, `check`, `status`, `alerts` and
`standalone` (those that need no config), and what they share in `common`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from monitor.cli.alerts import cmd_notify_test, cmd_silence
from monitor.cli.check import cmd_check, cmd_schema
from monitor.cli.common import EXIT_CONFIG, EXIT_FAIL
from monitor.cli.parser import build_parser
from monitor.cli.run import cmd_run, cmd_validate
from monitor.cli.standalone import cmd_db_copy, cmd_hash_password, cmd_sandbox
from monitor.cli.status import cmd_status
from monitor.config.envfile import read_env_file
from monitor.config.loader import load_config, resolve_config_path
from monitor.core.errors import ConfigError, IntmonError
from monitor.core.logs import setup_logging
from monitor.core.redact import Redactor

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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


def _env_file(file: str) -> dict[str, str]:
    loaded = read_env_file(file)
    for line, name in loaded.ignored:
        # systemd skips these lines as well; saying so beats a later "is not set".
        print(f"{file}:{line}: ignored: {name!r} is not a variable name", file=sys.stderr)
    return loaded.values
