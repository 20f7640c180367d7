"""What every check type shares: its config base class, its result, and its run context."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from checks.heartbeats import HeartbeatBook
from checks.slo import SloConfig
from checks.tls import CertificateCache
from checks.tokens import TokenCache
from monitor.core.jsonshape import Shape
from monitor.core.model import NAME_PATTERN, Model
from monitor.core.units import PositiveDuration

if TYPE_CHECKING:
    import aiohttp
    from multidict import CIMultiDictProxy

    from monitor.core.clock import Clock
    from monitor.core.redact import Redactor

# Why a run failed. The reason is the product: it is never collapsed to a bool.
ERROR_CLASSES = (
    "timeout",  # no complete answer within the check's timeout
    "connect",  # DNS, refused, reset before a response
    "tls",  # certificate or handshake failure
    "http_4xx",  # an unexpected 4xx other than 429
    "http_5xx",  # an unexpected 5xx
    "rate_limited",  # HTTP 429
    "assertion",  # a response arrived but an `expect` rule did not hold
    "body_error",  # a 2xx whose body reports an error (GraphQL errors, "ok": false, ...)
    "invalid_response",  # malformed HTTP, undecodable or oversized body, too many redirects
    "auth",  # the token endpoint failed
    "internal",  # a bug in intmon itself; logged with its traceback
)


@dataclass
class Result:
    """The outcome of one run of one check."""

    ok: bool
    error_class: str | None = None
    reason: str = ""
    status: int | None = None
    latency: float | None = None  # seconds
    started_at: float = 0.0  # unix seconds
    # Response headers, for the signal parsers: the runner reads them into `signals` and then
    # drops them, so nothing after it sees a header that was not redacted.
    headers: CIMultiDictProxy[str] | None = None
    tls_not_after: float | None = None
    # The provider's id for the request (X-Request-Id, CF-Ray, an error envelope's request_id).
    request_id: str | None = None
    # Small JSON-able facts for storage and status (quota, deprecation, step timings, ...).
    signals: dict[str, Any] = field(default_factory=dict)
    # The shape (paths and types, no values) of a 2xx JSON body, for schema drift; the
    # runner masks secrets in its paths.
    shape: Shape | None = None
    # Seconds per phase of the request (dns, connect, first_byte, total; see checks/timing.py),
    # for the status of the last run; None for check types that send no single request.
    phases: dict[str, float] | None = None

    @classmethod
    def failure(cls, error_class: str, reason: str, **kwargs: Any) -> Result:
        return cls(ok=False, error_class=error_class, reason=reason, **kwargs)


@dataclass
class RunContext:
    """What a check may use while it runs. Built once by the daemon; each run gets a copy
    (`for_run`) that shares everything but `secrets`."""

    session: aiohttp.ClientSession
    clock: Clock
    redactor: Redactor
    user_agent: str = "intmon"
    # OAuth2 access tokens, shared by every run for the daemon's lifetime (see checks/tokens.py).
    tokens: TokenCache = field(default_factory=TokenCache)
    # Heartbeats pushed to POST /heartbeat/{check}; the daemon loads it from the database.
    heartbeats: HeartbeatBook = field(default_factory=HeartbeatBook)
    # TLS certificate expiry per host, refreshed every few hours (see checks/tls.py).
    certificates: CertificateCache = field(default_factory=CertificateCache)
    # What this run's requests carried (credentials, the tokens it obtained): the runner masks
    # them, with the config's secrets, in everything the run's result holds.
    secrets: set[str] = field(default_factory=set)
    # The pooled session for requests with `keep_alive: true`; None: they use `session`.
    kept_alive: aiohttp.ClientSession | None = None

    def for_run(self) -> RunContext:
        return dataclasses.replace(self, secrets=set())


class CheckConfig(Model):
    """Fields every check type has. A check type subclasses this and implements `run`."""

    type_name: ClassVar[str]

    name: str = Field(pattern=NAME_PATTERN, max_length=128)
    type: str
    description: str = ""
    interval: PositiveDuration = 60.0
    timeout: PositiveDuration = 10.0
    # Checks that name the same provider share rate-limit pauses and alert grouping.
    provider: str | None = Field(default=None, pattern=NAME_PATTERN)
    notify: list[str] = Field(default_factory=list)
    alerts: dict[str, Any] = Field(default_factory=dict)
    # A service level objective: turns on the burn_rate rule (see checks/slo.py).
    slo: SloConfig | None = None
    # Shown on the public status page (/status): its name, state, uptime and latency only.
    public: bool = False

    def host_key(self) -> str | None:
        """The provider host this check talks to, for the per-host concurrency cap."""
        return None

    def describe_target(self) -> str:
        """A short, secret-free description of what is checked, for status output."""
        return self.type

    def degraded_after(self) -> float | None:
        """Latency (seconds) past which a passing run shows the check as degraded."""
        return None

    async def run(self, ctx: RunContext) -> Result:
        raise NotImplementedError
