"""What both sides of `make bench` are measured with."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    Nginx,
    cpu_seconds,
    descendants,
    machine_busy_seconds,
)

REPO = Path(__file__).resolve().parent.parent
BASELINE = Path(__file__).with_name("baseline-probe.json")
MB = 1024 * 1024
PROFILE_SOURCES = ("monitor/", "checks/")


@dataclass
class Side:
    """What one side did during the measured period. Latencies and lateness in seconds."""

    name: str
    period: float = 0.0
    cpu_s: float = 0.0
    completed: float = 0.0  # runs recorded within the CPU window
    nginx_cpu_s: float = 0.0
    other_cpu_s: float = 0.0  # CPU of everything else on the machine during the period
    served: int = 0  # requests nginx served
    runs: int = 0  # runs the side itself recorded
    failures: int = 0
    scheduled: float = 0.0
    on_time: float | None = None  # share of recorded runs started <= 100 ms late
    lateness_p99: float | None = None
    interval_p99: float | None = None  # Prometheus' own scrape-interval p99 (pair only)
    p95_median: float | None = None  # median over checks of each check's p95
    p95_max: float | None = None
    truth_p95: float | None = None  # the idle client's p95, kept-alive or fresh as the side
    rss: int = 0
    rss_parts: dict[str, int] = field(default_factory=dict)
    scrape_ms: float | None = None  # median wall time of a /metrics scrape in the period

    def figures(self) -> dict[str, float | None]:
        ms = lambda v: None if v is None else v * 1000  # noqa: E731
        return {
            "cpu_ms_per_check": self.cpu_s * 1000 / self.completed if self.completed else None,
            "cpu_ms_per_request": self.cpu_s * 1000 / self.served if self.served else None,
            "cpu_s": self.cpu_s,
            "nginx_cpu_s": self.nginx_cpu_s,
            "other_cores": self.other_cpu_s / self.period if self.period else None,
            "served": float(self.served),
            "runs": float(self.runs),
            "failures": float(self.failures),
            "completed_share": self.runs / self.scheduled if self.scheduled else None,
            "on_time_share": self.on_time,
            "lateness_p99_ms": ms(self.lateness_p99),
            "interval_p99_ms": ms(self.interval_p99),
            "p95_ms": ms(self.p95_median),
            "p95_max_ms": ms(self.p95_max),
            "p95_error_ms": (
                None
                if self.p95_median is None or self.truth_p95 is None
                else (self.p95_median - self.truth_p95) * 1000
            ),
            "rss_mb": self.rss / MB,
            "scrape_ms": self.scrape_ms,
        }


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Reading:
    """CPU of the side, of nginx and of the whole machine, and nginx's request count."""

    at: float
    cpu: float
    nginx_cpu: float
    busy: float
    served: int

    @classmethod
    def take(cls, pids: list[int], nginx: Nginx) -> Reading:
        return cls(
            time.time(),
            cpu_seconds(pids),
            cpu_seconds(descendants(nginx.child.pid)),
            machine_busy_seconds(),
            nginx.requests(),
        )


def window(name: str, start: Reading, end: Reading, args: argparse.Namespace) -> Side:
    side = Side(name, period=end.at - start.at, cpu_s=end.cpu - start.cpu)
    side.served = end.served - start.served - 1  # the second status request counts itself
    side.nginx_cpu_s = end.nginx_cpu - start.nginx_cpu
    side.other_cpu_s = max(end.busy - start.busy - side.cpu_s - side.nginx_cpu_s, 0.0)
    side.scheduled = args.checks * side.period / args.interval
    return side


def cores() -> int:
    import os  # noqa: PLC0415 (only here)

    return len(os.sched_getaffinity(0))


def settings(args: argparse.Namespace) -> dict[str, float]:
    return {"checks": args.checks, "interval": args.interval, "period": args.period}
