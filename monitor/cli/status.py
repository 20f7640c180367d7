"""`intmon status`: the health of every check, read from the database."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from pydantic import MISSING
from sqlalchemy import inspect

from monitor.alerting.outbox import AlertStateRow, load_states
from monitor.cli.common import EXIT_OK, opened_store, quota_cell, sunset_cell, table
from monitor.config.settings import Config
from monitor.core.clock import SystemClock
from monitor.core.units import DAY, format_duration
from monitor.engine.daemon import Daemon
from monitor.engine.status import CheckStatus
from monitor.metrics import Metrics
from monitor.signals.headers import Quota


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    """The same view as /api/status, rebuilt from the database by a daemon that never starts.

    Read-only: a daemon may be writing, and a look must never create, upgrade or vacuum."""
    with opened_store(config, writing=False) as store:
        daemon = Daemon(config, store, Metrics(), SystemClock())
        try:
            daemon.restore()
            # Firing alerts make a passing check degraded, as in the daemon; the table is
            # there once the daemon has run (an older database may not have it yet).
            if inspect(store.engine).has_table(AlertStateRow.__tablename__):
                daemon.alerter.book.replace_all(load_states(store.engine))
        finally:
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
        status_row(check, report.generated_at, firing.get(check.name, ()))
        for check in report.checks
    ]
    header = ["CHECK", "STATE", "LAST RUN", "ERR RATE", "P95", "429s", "QUOTA", "SUNSET"]
    print(table([*header, "FRESHNESS", "ALERTS", "REQUEST ID", "REASON"], rows))
    return EXIT_OK


def status_row(check: CheckStatus, now: float, alerts: Sequence[str] = ()) -> list[object]:
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
        sunset_cell(active, left),
        "-" if age is MISSING else format_duration(age, coarse=True),
        ", ".join(alerts) or "-",
        (last.request_id if last else None) or "-",
        check.state_reason or "",
    ]


def _quota(quota: Quota | MISSING) -> str:
    return "-" if quota is MISSING else quota_cell(quota.remaining, quota.limit)
