"""The config's own models: `monitor:`, `notifiers:`, and the validated `Config` they make up.

Loading, interpolation and error reporting are monitor.config.loader's business.
"""

from __future__ import annotations

import fnmatch
import importlib.util
from dataclasses import dataclass, field
from typing import Annotated, Literal
from urllib.parse import quote

from pydantic import AfterValidator, Field, field_validator

from checks.base import CheckConfig
from monitor.config.alerting import AlertingSettings, ErrorClass, SilenceConfig, apprise_rejects
from monitor.config.rules import RuleConfig
from monitor.config.web import StatusPageSettings, WebSettings
from monitor.core.errors import StorageError
from monitor.core.model import NAME_PATTERN, Model
from monitor.core.units import Duration, HttpUrlText, brief, require_http_url
from monitor.storage.backend import database_url, engine_url
from monitor.storage.upkeep import Retention


class ReplicaSettings(Model):
    """`monitor.replica`: this process as one replica of a monitor on a shared Postgres."""

    # Defaults to host name and pid (monitor.cluster.replica.default_id): unique per process.
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,63}$")
    # How long the replica's claim on its share of the checks lasts without a renewal (renewed
    # every third of it); a dead replica's checks move elsewhere after about this long.
    lease: Duration = Field(default=15.0, ge=0.1, le=3600.0)
    # How long a replica that cannot reach the database keeps running the checks it had, from
    # its last renewal, buffering their results: a database outage shorter than this loses no
    # run. 0s (or anything up to `lease`) stops at the lease instead.
    outage_hold: Duration = Field(default=120.0, ge=0.0, le=86400.0)


class MonitorSettings(Model):
    database: str = "monitor.db"
    listen: str = "127.0.0.1:9464"
    concurrency: int = Field(default=100, ge=1)
    per_host_concurrency: int = Field(default=8, ge=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # json: one object a line, for log shippers; text: for people reading a terminal.
    log_format: Literal["text", "json"] = "text"
    # Where people reach this monitor's pages; notifications link to {external_url}/checks/NAME.
    external_url: HttpUrlText | None = None
    shutdown_grace: Duration = 10.0
    retention: Retention = Field(default_factory=Retention)
    # A dead-man's switch (e.g. healthchecks.io) pinged every heartbeat_interval while the
    # daemon is healthy. Usually a secret: write it as ${HEARTBEAT_URL}.
    heartbeat_url: str | None = Field(default=None, repr=False)
    heartbeat_interval: Duration = Field(default=60.0, gt=0)
    # TLS, users and public paths of the HTTP server (monitor.config.web).
    web: WebSettings = Field(default_factory=WebSettings)
    replica: ReplicaSettings = Field(default_factory=ReplicaSettings)
    # asyncio's own loop, or uvloop (pip install 'integration-monitor[uvloop]'); auto: uvloop
    # when it is installed. asyncio is the default: uvloop did not spend less CPU per check in
    # `make bench` (README, Benchmarks).
    event_loop: Literal["auto", "asyncio", "uvloop"] = "asyncio"

    @field_validator("heartbeat_url")
    @classmethod
    def _heartbeat_url(cls, value: str | None) -> str | None:
        if not value:
            return None  # `${HEARTBEAT_URL:-}` unset: no dead-man's switch
        # Anyone holding the URL can keep the switch quiet: the error never repeats it.
        return require_http_url(value, secret=True)

    @field_validator("event_loop")
    @classmethod
    def _event_loop(cls, value: str) -> str:
        if value == "uvloop" and importlib.util.find_spec("uvloop") is None:
            raise ValueError(
                "uvloop is not installed (pip install 'integration-monitor[uvloop]'), or use auto"
            )
        return value

    @field_validator("database")
    @classmethod
    def _database(cls, value: str) -> str:
        if "://" not in value:
            return value  # a file path, for SQLite
        # Checked here, so a typo or a missing driver is a config error naming the key rather
        # than a traceback from whichever command opens the database first. Nothing connects:
        # this parses the URL and loads its dialect and driver.
        try:
            engine_url(value)
        except StorageError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        # isascii: "²" is a digit to isdigit() but not to int().
        if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ValueError(f"{brief(value)} is not host:port (e.g. 127.0.0.1:9464)")
        return value

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def check_url(self, check: str) -> str | None:
        """The page of one check, for links in notifications; None without `external_url`."""
        if self.external_url is None:
            return None
        return f"{self.external_url.rstrip('/')}/checks/{quote(check, safe='')}"

    @property
    def database_url(self) -> str:
        return database_url(self.database)


def _apprise_url(url: str) -> str:
    if apprise_rejects(url):
        # The URL may carry a token: the error's key path says which one, never what it is.
        raise ValueError("not a URL Apprise can use (unknown service or missing parts)")
    return url


class NotifierConfig(Model):
    name: str = Field(pattern=NAME_PATTERN)
    # Validated one by one, so an error points at `notifiers[i].urls[j]` and its line.
    urls: list[Annotated[str, AfterValidator(_apprise_url)]] = Field(min_length=1)
    min_severity: Literal["warning", "critical"] = "warning"
    # Routing by cause: only alerts whose last failure is of one of these classes (None: all).
    # An alert keeps the class it fired with until it resolves (monitor.alerting.machine).
    error_classes: tuple[ErrorClass, ...] | None = Field(default=None, min_length=1)


@dataclass
class Config:
    monitor: MonitorSettings
    checks: list[CheckConfig]
    notifiers: list[NotifierConfig] = field(default_factory=list)
    # check name -> rule name -> rule, with defaults.alerts and built-in defaults applied
    rules: dict[str, dict[str, RuleConfig]] = field(default_factory=dict)
    alerting: AlertingSettings = field(default_factory=AlertingSettings)
    silences: list[SilenceConfig] = field(default_factory=list)
    status_page: StatusPageSettings = field(default_factory=StatusPageSettings)
    secrets: frozenset[str] = frozenset()
    source: str = "<memory>"

    def is_public(self, check: CheckConfig) -> bool:
        """Shown on the public status page: `public: true`, or a `status_page.public_checks`
        pattern matches its name."""
        patterns = self.status_page.public_checks
        return check.public or any(fnmatch.fnmatchcase(check.name, p) for p in patterns)

    def check(self, name: str) -> CheckConfig:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)
