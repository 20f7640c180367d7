"""The Prometheus text format, written straight from intmon's own numbers.

prometheus_client renders a sample in about 4 µs, after building a `Sample` and a label dict
for it; at 2,000 checks that is most of a 0.3 s scrape budget. intmon's collectors instead
hand over `Family` rows, which `render` turns into text directly; the same rows become
prometheus_client `Metric`s for anything that reads a registry (`get_sample_value`,
`generate_latest`). No `_created` series: they double the size of every counter for a
timestamp nobody queries (the process start time is `process_start_time_seconds`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# (name suffix, label values, value); a histogram's `_bucket` rows carry `le` last.
Row = tuple[str, tuple[str, ...], float]


def bucket_bounds(bounds: Sequence[float]) -> tuple[str, ...]:
    """`le` label values as Prometheus writes them (`0.5`, `1.0`, `+Inf`), +Inf included."""
    return (*(repr(float(b)) for b in bounds), "+Inf")


@dataclass(slots=True)
class Family:
    name: str  # a counter's without `_total`, as prometheus_client names families
    kind: str  # counter | gauge | histogram
    help: str
    labels: tuple[str, ...] = ()
    rows: list[Row] = field(default_factory=list)

    def add(self, values: tuple[str, ...], value: float) -> None:
        self.rows.append(("_total" if self.kind == "counter" else "", values, value))

    def add_histogram(
        self, values: tuple[str, ...], les: tuple[str, ...], counts: Sequence[int], total: float
    ) -> None:
        """`counts` per bucket (not cumulative), the +Inf bucket last; `les` from bucket_bounds."""
        rows, running = self.rows, 0
        for le, count in zip(les, counts, strict=True):
            running += count
            rows.append(("_bucket", (*values, le), running))
        rows.append(("_sum", values, total))
        rows.append(("_count", values, running))

    def metric(self) -> Metric:
        metric = Metric(self.name, self.help, self.kind)
        bucket_labels = (*self.labels, "le")
        for suffix, values, value in self.rows:
            names = bucket_labels if suffix == "_bucket" else self.labels
            metric.add_sample(self.name + suffix, dict(zip(names, values, strict=True)), value)
        return metric


def number(value: float) -> str:
    """`3` rather than `3.0`: most samples are counts, and two bytes a line is 5% of a scrape."""
    if isinstance(value, int) or (value.is_integer() and abs(value) < 2**53):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def render(families: Iterable[Family], out: list[str]) -> None:
    for family in families:
        head = family.name + "_total" if family.kind == "counter" else family.name
        doc = family.help.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {head} {doc}\n# TYPE {head} {family.kind}\n")
        names, bucket_names = family.labels, (*family.labels, "le")
        for suffix, values, value in family.rows:
            if values:
                keys = bucket_names if suffix == "_bucket" else names
                pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in zip(keys, values, strict=True))
                out.append(f"{family.name}{suffix}{{{pairs}}} {number(value)}\n")
            else:
                out.append(f"{family.name}{suffix} {number(value)}\n")


class TextCollector(ABC):
    """A collector whose families `Registry.exposition` renders without prometheus_client."""

    @abstractmethod
    def families(self) -> Iterable[Family]: ...

    def collect(self) -> Iterator[Metric]:
        for family in self.families():
            yield family.metric()


class Registry(CollectorRegistry):
    """The daemon's registry: its own collectors render directly, any other (process, GC,
    platform) through prometheus_client. Registering checks names across both."""

    def __init__(self) -> None:
        super().__init__()
        self._direct: list[TextCollector] = []
        self._others = CollectorRegistry()

    def register(self, collector: Collector) -> None:
        super().register(collector)
        if isinstance(collector, TextCollector):
            self._direct.append(collector)
        else:
            self._others.register(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        if isinstance(collector, TextCollector):
            self._direct.remove(collector)
        else:
            self._others.unregister(collector)

    def exposition(self) -> bytes:
        out: list[str] = []
        for collector in list(self._direct):
            render(collector.families(), out)
        return "".join(out).encode() + generate_latest(self._others)
