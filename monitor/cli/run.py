"""`intmon run` and `intmon validate`: the daemon, and the look at its config before starting it."""

from __future__ import annotations

import argparse
import os

from monitor.cli.common import EXIT_OK
from monitor.config.settings import Config
from monitor.core.clock import SystemClock
from monitor.core.redact import Redactor
from monitor.service import Service, run_service


def cmd_validate(config: Config, args: argparse.Namespace) -> int:
    print(f"{config.source}: ok ({len(config.checks)} checks, {len(config.notifiers)} notifiers)")
    return EXIT_OK


def cmd_run(config: Config, args: argparse.Namespace, redactor: Redactor) -> int:
    service = Service(config, redactor, SystemClock(), os.environ)
    return run_service(service, config.monitor.event_loop)
