"""Pure parsers for the response headers that tell a team an integration is going bad.

Rate-limit quota in six dialects (`Quota.dialect`: the IETF draft's structured list and
dictionary forms and its older RateLimit-* triplet, X-RateLimit-*, X-Rate-Limit-*, Shopify's
call limit), Retry-After, Deprecation/Sunset with their vendor variants, and the provider's
request id. Every function takes the response headers (a case-insensitive mapping such as
aiohttp's `CIMultiDictProxy[str]`) and `now` in unix seconds, and never raises: a provider's
malformed header is ignored, it never fails a check. They run for every check run, so each
parser first checks that its headers are present and does no work otherwise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import http_sf

from monitor.core.timestamps import epoch_seconds, parse_http_date, parse_iso_date

# Must be case-insensitive (CIMultiDict / CIMultiDictProxy); `getall` is used when present so
# that repeated headers (Link, Warning) are all seen.
Headers = Mapping[str, str]

# Bare numbers in Reset headers from 1e9 on (2001-09-09 in seconds) are epochs, whose unit
# `epoch_seconds` tells by magnitude; anything smaller is a delta, since no quota window lasts
# 31 years.
_EPOCH_S = 1e9


@dataclass(frozen=True, slots=True)
class Quota:
    """The provider's rate-limit quota as announced. Any field may be unknown."""

    remaining: float | None
    limit: float | None
    reset_at: float | None  # unix seconds
    policy: str | None
    dialect: str  # ietf | ietf-dict | ietf-legacy | x-ratelimit | x-rate-limit | shopify
    # When a check's signals kept it (unix seconds); parsers leave it unset.
    seen_at: float | None = None


@dataclass(slots=True)
class Deprecation:
    """What the API announced about its own end of life."""

    deprecated: bool
    deprecated_at: float | None = None  # unix seconds; may lie in the future (announced ahead)
    sunset_at: float | None = None  # unix seconds; a past value means "may stop at any time"
    links: list[str] = field(default_factory=list)  # rel=deprecation: the migration guide
    sunset_links: list[str] = field(default_factory=list)  # rel=sunset: the sunset policy
    source: str = ""  # the headers that said so, e.g. "deprecation+sunset"
    message: str | None = None  # free text from Warning / X-API-Warn

    def seconds_to_sunset(self, now: float) -> float | None:
        """Time left before sunset; 0 once it has passed (RFC 8594: a past date means now)."""
        return None if self.sunset_at is None else max(0.0, self.sunset_at - now)


# -- small helpers -------------------------------------------------------------------------


def _getall(headers: Headers, name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    value = headers.get(name)
    return [] if value is None else [value]


def _structured(value: str, tltype: str) -> Any:
    """An RFC 9651 structured field, or None when the provider sent something else."""
    try:
        return http_sf.parse(value.encode("utf-8", "surrogateescape"), tltype=tltype)
    except ValueError:  # StructuredFieldError and UnicodeEncodeError both derive from it
        return None


def _number(text: str | None) -> float | None:
    """A non-negative finite number; the first member of `10, 10;w=1` style lists counts."""
    if text is None:
        return None
    head = text.split(",", 1)[0].split(";", 1)[0].strip()
    try:
        value = float(head)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _sf_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def parse_date(text: str) -> float | None:
    """Vendors write dates every which way: HTTP-date, ISO 8601, or `@epoch`."""
    text = text.strip()
    if text.startswith("@"):
        item = _structured(text, "item")
        return item[0].timestamp() if item and isinstance(item[0], datetime) else None
    at = parse_http_date(text)
    return parse_iso_date(text) if at is None else at


def _reset_at(text: str | None, now: float) -> float | None:
    """A Reset header as an absolute time: delta seconds, an epoch (s, ms, ...) or a date."""
    value = _number(text)
    if value is None:
        return None if text is None else parse_date(text)
    return epoch_seconds(value) if value >= _EPOCH_S else now + value


# -- Retry-After ---------------------------------------------------------------------------


def parse_retry_after(value: str, now: float) -> float | None:
    """Seconds to wait from `now`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    text = value.strip()
    if not text:
        return None
    if text[0].isdigit():
        try:
            seconds = float(text)
        except ValueError:
            seconds = math.nan  # maybe a date without weekday, e.g. "31 Dec 2024 ..."
        if math.isfinite(seconds):
            return seconds
    at = parse_http_date(text)
    return None if at is None else max(0.0, at - now)


# -- quota ---------------------------------------------------------------------------------


def _ietf_structured(raw: str, policies_raw: str | None, now: float) -> Quota | None:
    """Draft-08..10 `RateLimit: "default";r=50;t=30`, else the draft-07 dictionary form."""
    members = _structured(raw, "list")
    if members:
        best: tuple[float, str | None, Any] | None = None
        for value, params in members:
            remaining = _sf_number(params.get("r"))
            # Several policies may apply at once; the tightest one is the one that bites.
            if remaining is not None and (best is None or remaining < best[0]):
                name = str(value) if isinstance(value, str | http_sf.Token) else None
                best = (remaining, name, params.get("t"))
        if best is not None:
            remaining, name, reset = best
            delta = _sf_number(reset)
            limit = _policy_quota(policies_raw, name) if policies_raw else None
            reset_at = None if delta is None else now + delta
            return Quota(remaining, limit, reset_at, name, "ietf")
    members = _structured(raw, "dictionary")
    if members:
        remaining = _sf_number(members.get("remaining", (None,))[0])
        limit = _sf_number(members.get("limit", (None,))[0])
        delta = _sf_number(members.get("reset", (None,))[0])
        reset_at = None if delta is None else now + delta
        if remaining is not None or limit is not None:
            return Quota(remaining, limit, reset_at, None, "ietf-dict")
    return None


def _policy_quota(raw: str, name: str | None) -> float | None:
    members = _structured(raw, "list")
    for value, params in members or ():
        if isinstance(value, str | http_sf.Token) and str(value) == name:
            return _sf_number(params.get("q"))
    return None


def _triplet(headers: Headers, prefix: str, now: float, dialect: str) -> Quota | None:
    remaining = _number(headers.get(prefix + "remaining"))
    limit = _number(headers.get(prefix + "limit"))
    if remaining is None:
        # GitHub also sends `-Used`; it is enough when Remaining itself is unusable.
        used = _number(headers.get(prefix + "used"))
        if used is not None and limit is not None:
            remaining = max(0.0, limit - used)
    if remaining is None and limit is None:
        return None
    reset_at = _reset_at(headers.get(prefix + "reset"), now)
    if reset_at is None:
        after = _number(headers.get(prefix + "reset-after"))  # Discord
        reset_at = None if after is None else now + after
    return Quota(remaining, limit, reset_at, None, dialect)


# Dialects of leaky buckets: they drain continuously and never reset all at once, so a quota
# in one of them has no reset time by nature, not because the provider left it out.
LEAKY_DIALECTS = frozenset({"shopify"})

_SHOPIFY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*")


def _shopify(raw: str) -> Quota | None:
    match = _SHOPIFY.fullmatch(raw)
    if match is None:
        return None
    used, limit = float(match.group(1)), float(match.group(2))
    # A leaky bucket that drains continuously: there is no reset time to report.
    return Quota(max(0.0, limit - used), limit, None, None, "shopify")


def parse_quota(headers: Headers, now: float) -> Quota | None:
    """The announced quota, from the first dialect present that parses.

    Providers that send two dialects send the same numbers in both, so the order only matters
    for malformed values: the standard dialects are tried first, vendor ones after.
    """
    raw = headers.get("RateLimit")
    if raw is not None:
        quota = _ietf_structured(raw, headers.get("RateLimit-Policy"), now)
        if quota is not None:
            return quota
    for prefix, dialect in _TRIPLETS:
        if prefix + "remaining" in headers or prefix + "limit" in headers:
            quota = _triplet(headers, prefix, now, dialect)
            if quota is not None:
                return quota
    raw = headers.get("X-Shopify-Shop-Api-Call-Limit")
    return None if raw is None else _shopify(raw)


_TRIPLETS = (
    ("ratelimit-", "ietf-legacy"),  # drafts 00..06: RateLimit-Limit / -Remaining / -Reset
    ("x-ratelimit-", "x-ratelimit"),  # GitHub, Discord, most of the web
    ("x-rate-limit-", "x-rate-limit"),  # X/Twitter, Okta
)


# -- Deprecation / Sunset ------------------------------------------------------------------

# Warning and X-API-Warn carry any kind of notice (Kubernetes sends 299 for unknown fields too);
# only text about the API going away counts as a deprecation.
_DEPRECATION_TEXT = re.compile(
    r"deprecat|sunset|end[- ]of[- ]life|no longer supported|will be removed|retir", re.IGNORECASE
)
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_LINK_HINT = re.compile("deprecation|sunset", re.IGNORECASE)
_LINK = re.compile(r"<([^>]*)>([^<]*)")
_LINK_PARAM = re.compile(r';\s*([^\s;,=]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^\s;,]*))?')


def _deprecation_value(raw: str) -> tuple[bool, float | None]:
    """RFC 9745 `@epoch`, the draft's `true`, or the older drafts' HTTP-date."""
    item = _structured(raw, "item")
    if item is not None:
        value = item[0]
        if isinstance(value, datetime):
            return True, value.timestamp()
        if isinstance(value, bool):
            return value, None
        if isinstance(value, int):
            # Some servers drop the `@`; a small integer is a boolean written as a number.
            return value != 0, epoch_seconds(value) if value >= _EPOCH_S else None
        if isinstance(value, str | http_sf.Token):
            word = str(value).lower()
            if word in ("true", "yes"):
                return True, None
            if word in ("false", "no"):
                return False, None
    at = parse_date(raw)
    return (True, at) if at is not None else (False, None)


def parse_links(values: Iterable[str]) -> list[tuple[str, frozenset[str]]]:
    """RFC 8288 Link values -> (URL, rels); several links per value, several rels per link."""
    links = []
    for value in values:
        for match in _LINK.finditer(value):
            rels: frozenset[str] = frozenset()
            for param in _LINK_PARAM.finditer(match.group(2)):
                if param.group(1).lower() == "rel":
                    rels = frozenset((param.group(2) or "").strip('"').lower().split())
                    break  # RFC 8288 §3.3: only the first rel parameter counts
            links.append((match.group(1).strip(), rels))
    return links


def _warning_text(values: list[str]) -> str | None:
    for value in values:
        if _DEPRECATION_TEXT.search(value):
            quoted = _QUOTED.search(value)
            return (quoted.group(1) if quoted else value).strip()
    return None


def parse_deprecation(headers: Headers, now: float) -> Deprecation | None:
    """Deprecation (RFC 9745 and drafts), Sunset (RFC 8594), their links and vendor variants.

    A deprecation announced for a future date counts already: warning ahead is the point. A
    Sunset alone counts too: a resource with a removal date is going away whether or not it says
    so. Links alone do not, since RFC 8594 §6 lets servers link their sunset (and deprecation)
    policy from resources that are not scheduled for removal. `now` is unused today and kept so
    every parser has the same shape.
    """
    deprecated, deprecated_at, sunset_at, message = False, None, None, None
    sources = []
    raw = headers.get("Deprecation")
    if raw is not None:
        flagged, deprecated_at = _deprecation_value(raw)
        if flagged:
            deprecated = True
            sources.append("deprecation")
    raw = headers.get("X-API-Deprecation-Date")
    if raw is not None:
        at = parse_date(raw)
        if at is not None:
            deprecated = True
            deprecated_at = deprecated_at if deprecated_at is not None else at
            sources.append("x-api-deprecation-date")
    raw = headers.get("Sunset")
    if raw is not None:
        sunset_at = parse_date(raw)
        if sunset_at is not None:
            deprecated = True
            sources.append("sunset")
    for name in ("X-API-Warn", "Warning"):
        if name in headers:
            text = _warning_text(_getall(headers, name))
            if text is not None:
                deprecated = True
                message = message or text
                sources.append(name.lower())
    if not deprecated:
        return None
    result = Deprecation(True, deprecated_at, sunset_at, source="+".join(sources), message=message)
    for url, rels in _relevant_links(headers):
        if "deprecation" in rels:
            result.links.append(url)
        if "sunset" in rels:
            result.sunset_links.append(url)
    return result


def _relevant_links(headers: Headers) -> list[tuple[str, frozenset[str]]]:
    # Most Link headers are pagination; skip the parse unless one could matter.
    return parse_links(v for v in _getall(headers, "Link") if _LINK_HINT.search(v))


# -- request id ----------------------------------------------------------------------------

# The provider's own id of the request first (what its support asks for), then the ids of the
# CDN or tracing layer in front of it, which its support can still look up.
REQUEST_ID_HEADERS = (
    "X-Request-Id",  # most APIs (Shopify, Heroku, nginx's $request_id)
    "Request-Id",  # Stripe
    "X-Amzn-RequestId",  # AWS API Gateway, Lambda
    "X-Amz-Request-Id",  # S3
    "X-GitHub-Request-Id",
    "X-Ms-Request-Id",  # Azure
    "X-Correlation-Id",
    "X-Amz-Cf-Id",  # CloudFront
    "CF-Ray",  # Cloudflare
    "X-Cloud-Trace-Context",  # Google Cloud
)
# An id is an opaque token; anything longer is not one worth quoting in a message.
_REQUEST_ID_MAX = 128


def request_id_from_headers(headers: Headers | None, names: Iterable[str] | None) -> str | None:
    """The first non-empty header of `names` (default REQUEST_ID_HEADERS), trimmed."""
    if not headers:
        return None
    for name in REQUEST_ID_HEADERS if names is None else names:
        value = headers.get(name)
        if value is not None and value.strip():
            return clean_request_id(value)
    return None


def clean_request_id(value: str) -> str:
    """One line, at most _REQUEST_ID_MAX characters: it is quoted in reasons and messages."""
    return " ".join(value.split())[:_REQUEST_ID_MAX]


# -- the per-run summary -------------------------------------------------------------------


def signals_from_headers(headers: Headers | None, now: float) -> dict[str, Any]:
    """The small JSON-able dict stored with each run; keys are omitted when not announced."""
    signals: dict[str, Any] = {}
    if not headers:
        return signals
    quota = parse_quota(headers, now)
    if quota is not None:
        for key, value in (
            ("quota_remaining", quota.remaining),
            ("quota_limit", quota.limit),
            ("quota_reset", quota.reset_at),
            ("quota_policy", quota.policy),
        ):
            if value is not None:
                signals[key] = value
        signals["quota_dialect"] = quota.dialect
    deprecation = parse_deprecation(headers, now)
    if deprecation is not None:
        signals["deprecated"] = True
        signals["deprecation_source"] = deprecation.source
        for key, value in (
            ("deprecated_at", deprecation.deprecated_at),
            ("sunset", deprecation.sunset_at),
            ("deprecation_message", deprecation.message),
        ):
            if value is not None:
                signals[key] = value
        if deprecation.links:
            signals["deprecation_links"] = deprecation.links
        if deprecation.sunset_links:
            signals["sunset_links"] = deprecation.sunset_links
    raw = headers.get("Retry-After")
    if raw is not None:
        retry_after = parse_retry_after(raw, now)
        if retry_after is not None:
            signals["retry_after"] = retry_after
    return signals
