"""`intmon notify-test` and `intmon silence`: the notifiers, and alerts held back on purpose."""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import sys

from monitor.alerting.notify import Notify
from monitor.alerting.silences import add_silence, expire_silence, list_silences
from monitor.cli.common import EXIT_CONFIG, EXIT_FAIL, EXIT_OK, opened_store, table
from monitor.config.settings import Config
from monitor.core.clock import SystemClock
from monitor.core.redact import Redactor
from monitor.core.units import format_duration, parse_duration


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
    now = SystemClock().time()
    with opened_store(config, writing=True) as store:
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
            print(table(["ID", "PATTERN", "ENDS", "COMMENT"], rows))
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


def _silence_length(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:  # add_silence refuses a silence that has already ended
        raise ValueError(f"{text!r} is not longer than zero")
    return seconds
