"""Header parsing over real-world samples: quota dialects, Retry-After, Deprecation/Sunset."""

from __future__ import annotations

import json
from email.utils import formatdate

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from monitor.core.timestamps import EPOCH_MILLIS, parse_http_date
from monitor.signals.headers import (
    LEAKY_DIALECTS,
    Quota,
    parse_deprecation,
    parse_links,
    parse_quota,
    parse_retry_after,
    signals_from_headers,
)

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
JUN_2023 = 1688169599.0  # Fri, 30 Jun 2023 23:59:59 GMT
DEC_2024 = 1735689599.0  # Tue, 31 Dec 2024 23:59:59 GMT


def h(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    """Headers as aiohttp hands them over: case-insensitive, repeated names kept."""
    return CIMultiDictProxy(CIMultiDict(pairs))


# (headers, expected quota) -- values as the providers' documentation shows them.
QUOTA_CASES = [
    (
        h(
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "4999"),
            ("x-ratelimit-used", "1"),
            ("x-ratelimit-reset", "1372700873"),
            ("x-ratelimit-resource", "core"),
        ),
        Quota(4999, 5000, 1372700873, None, "x-ratelimit"),
    ),
    (
        h(("x-ratelimit-limit", "60"), ("x-ratelimit-used", "60"), ("x-ratelimit-reset", "x")),
        Quota(0, 60, None, None, "x-ratelimit"),
    ),
    (
        h(
            ("x-rate-limit-limit", "900"),
            ("x-rate-limit-remaining", "847"),
            ("x-rate-limit-reset", "1705420414"),
        ),
        Quota(847, 900, 1705420414, None, "x-rate-limit"),
    ),
    (
        h(
            ("X-Rate-Limit-Limit", "600"),
            ("X-Rate-Limit-Remaining", "0"),
            ("X-Rate-Limit-Reset", "1700000060"),
        ),
        Quota(0, 600, 1700000060, None, "x-rate-limit"),
    ),
    (h(("X-Shopify-Shop-Api-Call-Limit", "32/40")), Quota(8, 40, None, None, "shopify")),
    (h(("X-Shopify-Shop-Api-Call-Limit", "41/40")), Quota(0, 40, None, None, "shopify")),
    (
        h(
            ("X-RateLimit-Limit", "5"),
            ("X-RateLimit-Remaining", "4"),
            ("X-RateLimit-Reset", "1470173023.123"),
            ("X-RateLimit-Reset-After", "1.2"),
        ),
        Quota(4, 5, 1470173023.123, None, "x-ratelimit"),
    ),
    (
        h(("X-RateLimit-Remaining", "4"), ("X-RateLimit-Reset-After", "1.5")),
        Quota(4, None, NOW + 1.5, None, "x-ratelimit"),
    ),
    (
        h(("X-RateLimit-Remaining", "10"), ("X-RateLimit-Reset", "1700000045000")),
        Quota(10, None, 1700000045, None, "x-ratelimit"),
    ),
    (
        h(("X-RateLimit-Remaining", "10"), ("X-RateLimit-Reset", "45")),
        Quota(10, None, NOW + 45, None, "x-ratelimit"),
    ),
    (
        h(("X-RateLimit-Remaining", "10"), ("X-RateLimit-Reset", "Tue, 14 Nov 2023 22:14:00 GMT")),
        Quota(10, None, NOW + 40, None, "x-ratelimit"),
    ),
    (
        h(("RateLimit", '"default";r=50;t=30'), ("RateLimit-Policy", '"default";q=100;w=60')),
        Quota(50, 100, NOW + 30, "default", "ietf"),
    ),
    (
        h(
            ("RateLimit", '"burst";r=5;t=1, "daily";r=2;t=3600'),
            ("RateLimit-Policy", '"burst";q=10;w=1, "daily";q=1000;w=86400'),
        ),
        Quota(2, 1000, NOW + 3600, "daily", "ietf"),
    ),
    (h(("RateLimit", "default;r=0")), Quota(0, None, None, "default", "ietf")),
    (
        h(("RateLimit", "limit=100, remaining=50, reset=30"), ("RateLimit-Policy", "100;w=60")),
        Quota(50, 100, NOW + 30, None, "ietf-dict"),
    ),
    (
        h(
            ("RateLimit-Limit", "10, 10;w=1, 50;w=60"),
            ("RateLimit-Remaining", "9"),
            ("RateLimit-Reset", "7"),
        ),
        Quota(9, 10, NOW + 7, None, "ietf-legacy"),
    ),
    (
        h(("RateLimit", "garbage;;"), ("X-RateLimit-Remaining", "3")),
        Quota(3, None, None, None, "x-ratelimit"),
    ),
    (
        h(("RateLimit-Remaining", "-1"), ("X-Rate-Limit-Remaining", "3")),
        Quota(3, None, None, None, "x-rate-limit"),
    ),
]
QUOTA_IDS = [
    "github",
    "github-used-only",
    "x-twitter",
    "okta",
    "shopify",
    "shopify-over-limit",
    "discord-float-epoch",
    "discord-reset-after",
    "epoch-ms",
    "delta",
    "http-date-reset",
    "ietf-draft10",
    "ietf-draft10-lowest-remaining",
    "ietf-draft10-token-without-policy",
    "ietf-draft07-dictionary",
    "ietf-draft03-separate-headers",
    "malformed-ietf-falls-back",
    "negative-falls-back",
]


# Either side of the one place epoch milliseconds start (shared with freshness timestamps):
# just below is an epoch in seconds, from it on milliseconds. Below 1e9 is a delta from now.
RESET_BOUNDARY = [
    (EPOCH_MILLIS - 1, EPOCH_MILLIS - 1),
    (EPOCH_MILLIS, EPOCH_MILLIS / 1000),
    (999_999_999, NOW + 999_999_999),
    (1_000_000_000, 1_000_000_000),
]


@pytest.mark.parametrize(
    ("reset", "reset_at"), RESET_BOUNDARY, ids=["s-below", "ms-from", "delta", "epoch-s"]
)
def test_a_reset_number_is_a_delta_an_epoch_or_epoch_milliseconds(
    reset: float, reset_at: float
) -> None:
    quota = parse_quota(
        h(("X-RateLimit-Remaining", "1"), ("X-RateLimit-Reset", f"{reset:.0f}")), NOW
    )
    assert quota is not None
    assert quota.reset_at == reset_at


@pytest.mark.parametrize(("headers", "expected"), QUOTA_CASES, ids=QUOTA_IDS)
def test_it_reads_the_quota_of_each_dialect(
    headers: CIMultiDictProxy[str], expected: Quota
) -> None:
    assert parse_quota(headers, NOW) == expected


MALFORMED_QUOTA = [
    h(),
    h(("Content-Type", "application/json"), ("Request-Id", "req_123")),  # Stripe 200 or 429
    h(("X-RateLimit-Remaining", "lots"), ("X-RateLimit-Limit", "")),
    h(("X-RateLimit-Remaining", "nan"), ("X-RateLimit-Limit", "inf")),
    h(("X-RateLimit-Remaining", "-5")),
    h(("RateLimit", '"default";r=-1;t=30')),
    h(("RateLimit", '"default";r=?1')),
    h(("RateLimit", '"default";q=100;w=60')),
    h(("RateLimit", 'limit=?1, remaining="x"')),
    h(("RateLimit", "\udcff\udcfe")),
    h(("X-Shopify-Shop-Api-Call-Limit", "32 of 40")),
    h(("X-Shopify-Shop-Api-Call-Limit", "/40")),
]
MALFORMED_QUOTA_IDS = [
    "no-headers",
    "stripe",
    "words",
    "nan-inf",
    "negative",
    "ietf-negative",
    "ietf-boolean",
    "ietf-policy-in-wrong-header",
    "ietf-dict-wrong-types",
    "undecodable-bytes",
    "shopify-prose",
    "shopify-missing-used",
]


@pytest.mark.parametrize("headers", MALFORMED_QUOTA, ids=MALFORMED_QUOTA_IDS)
def test_it_ignores_absent_or_malformed_quota(headers: CIMultiDictProxy[str]) -> None:
    assert parse_quota(headers, NOW) is None


def test_it_takes_the_limit_from_the_policy_with_the_same_name() -> None:
    headers = h(
        ("RateLimit", '"hourly";r=7;t=100'),
        ("RateLimit-Policy", '"minute";q=10;w=60, "hourly";q=500;w=3600'),
    )
    quota = parse_quota(headers, NOW)
    assert quota is not None
    assert (quota.limit, quota.policy) == (500, "hourly")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (" 30 ", 30.0),
        ("Tue, 14 Nov 2023 22:15:00 GMT", 100.0),
        ("Tuesday, 14-Nov-23 22:15:00 GMT", 100.0),
        ("Tue Nov 14 22:15:00 2023", 100.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("", None),
        ("-5", None),
        ("soon", None),
        ("5 seconds", None),
        ("1e999", None),
        ("Tue, 14 Nov 2023 25:15:00 GMT", None),
    ],
    ids=[
        "delay-seconds",
        "zero",
        "fractional",
        "padded",
        "imf-fixdate",
        "rfc850-date",
        "asctime-date",
        "past-date-means-now",
        "empty",
        "negative",
        "word",
        "seconds-with-unit",
        "overflow",
        "impossible-hour",
    ],
)
def test_it_parses_retry_after(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


# (headers, deprecated_at, sunset_at, source) for responses that announce a deprecation.
DEPRECATED_CASES = [
    (h(("Deprecation", "@1688169599")), JUN_2023, None, "deprecation"),
    (h(("Deprecation", "@1893456000")), 1893456000, None, "deprecation"),
    (h(("Deprecation", "true")), None, None, "deprecation"),
    (h(("Deprecation", "?1")), None, None, "deprecation"),
    (h(("Deprecation", "1688169599")), JUN_2023, None, "deprecation"),
    (h(("Deprecation", "1688169599000")), JUN_2023, None, "deprecation"),
    (h(("Deprecation", "Fri, 30 Jun 2023 23:59:59 GMT")), JUN_2023, None, "deprecation"),
    (h(("Sunset", "Tue, 31 Dec 2024 23:59:59 GMT")), None, DEC_2024, "sunset"),
    (h(("Sunset", "Sat, 31 Dec 2022 23:59:59 GMT")), None, 1672531199, "sunset"),
    (h(("Sunset", "2024-12-31T23:59:59Z")), None, DEC_2024, "sunset"),
    (
        h(("Deprecation", "@1688169599"), ("Sunset", "Tue, 31 Dec 2024 23:59:59 GMT")),
        JUN_2023,
        DEC_2024,
        "deprecation+sunset",
    ),
    (
        h(("Deprecation", "true"), ("Sunset", "not a date")),
        None,
        None,
        "deprecation",
    ),
    (
        h(("X-API-Deprecation-Date", "2023-06-30T23:59:59+00:00")),
        JUN_2023,
        None,
        "x-api-deprecation-date",
    ),
    (
        h(("X-API-Deprecation-Date", "Fri, 30 Jun 2023 23:59:59 GMT")),
        JUN_2023,
        None,
        "x-api-deprecation-date",
    ),
    (h(("X-API-Warn", "This endpoint is deprecated; use /v2/orders")), None, None, "x-api-warn"),
    (h(("Warning", '299 - "Deprecated API"')), None, None, "warning"),
    (
        h(
            ("Warning", '299 - "unknown field \\"x\\""'),
            ("Warning", '299 - "v1beta1 is deprecated"'),
        ),
        None,
        None,
        "warning",
    ),
]
DEPRECATED_IDS = [
    "rfc9745-past-date",
    "rfc9745-future-date",
    "legacy-true",
    "structured-boolean",
    "epoch-without-at",
    "epoch-ms-without-at",
    "legacy-http-date",
    "sunset-future",
    "sunset-past",
    "sunset-iso",
    "deprecation-and-sunset",
    "malformed-sunset-is-ignored",
    "vendor-iso-date",
    "vendor-http-date",
    "x-api-warn",
    "warning-299",
    "kubernetes-warnings",
]


@pytest.mark.parametrize(
    ("headers", "deprecated_at", "sunset_at", "source"), DEPRECATED_CASES, ids=DEPRECATED_IDS
)
def test_it_flags_announced_deprecations(
    headers: CIMultiDictProxy[str],
    deprecated_at: float | None,
    sunset_at: float | None,
    source: str,
) -> None:
    deprecation = parse_deprecation(headers, NOW)
    assert deprecation is not None
    assert deprecation.deprecated is True
    assert (deprecation.deprecated_at, deprecation.sunset_at) == (deprecated_at, sunset_at)
    assert deprecation.source == source


NOT_DEPRECATED = [
    h(),
    h(("Content-Type", "application/json")),
    h(("Deprecation", "false")),
    h(("Deprecation", "?0")),
    h(("Deprecation", "0")),
    h(("Deprecation", "maybe later")),
    h(("Deprecation", "@")),
    h(("Deprecation", "@99999999999999")),
    h(("Sunset", "someday")),
    h(("Sunset", "")),
    h(("Sunset", "Mon, 99 Foo 2018 23:59:59 GMT")),
    h(("X-API-Deprecation-Date", "tbd")),
    h(("Warning", '199 - "Response is stale"')),
    h(("Warning", '299 - "unknown field \\"spec.x\\""')),
    h(("X-API-Warn", "Slow down")),
    h(("Link", '<https://api.example.com/policy>; rel="deprecation"')),
    h(("Link", '<https://api.example.com/items?page=2>; rel="next"')),
]
NOT_DEPRECATED_IDS = [
    "no-headers",
    "unrelated-headers",
    "deprecation-false",
    "structured-false",
    "zero",
    "prose",
    "bare-at",
    "date-out-of-range",
    "sunset-word",
    "sunset-empty",
    "sunset-impossible-date",
    "vendor-date-word",
    "warning-stale",
    "warning-299-unrelated",
    "x-api-warn-unrelated",
    "policy-link-alone",
    "pagination-link",
]


@pytest.mark.parametrize("headers", NOT_DEPRECATED, ids=NOT_DEPRECATED_IDS)
def test_it_does_not_flag_absent_or_malformed_deprecations(
    headers: CIMultiDictProxy[str],
) -> None:
    assert parse_deprecation(headers, NOW) is None


def test_it_keeps_deprecation_and_sunset_links_from_every_link_header() -> None:
    headers = h(
        ("Deprecation", "@1688169599"),
        ("Link", '<https://api.example.com/items?page=2>; rel="next"'),
        (
            "Link",
            '<https://developer.example.com/deprecation>; rel="deprecation"; type="text/html", '
            '<https://developer.example.com/a,b>; rel="Sunset alternate"',
        ),
        ("link", "<https://developer.example.com/migrate>; rel=deprecation"),
    )
    deprecation = parse_deprecation(headers, NOW)
    assert deprecation is not None
    assert deprecation.links == [
        "https://developer.example.com/deprecation",
        "https://developer.example.com/migrate",
    ]
    assert deprecation.sunset_links == ["https://developer.example.com/a,b"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            '<https://a>; rel="next", <https://b>; rel="prev last"',
            [("https://a", {"next"}), ("https://b", {"prev", "last"})],
        ),
        ('<https://a>; title="x; rel=sunset"; rel=deprecation', [("https://a", {"deprecation"})]),
        ('<https://a>; rel="sunset"; rel="next"', [("https://a", {"sunset"})]),
        ("<https://a>", [("https://a", set())]),
        ("no links here", []),
        ("<https://a; rel=sunset", []),
    ],
    ids=["several", "rel-inside-quoted-title", "first-rel-wins", "no-rel", "junk", "unclosed"],
)
def test_it_parses_link_headers(value: str, expected: list[tuple[str, set[str]]]) -> None:
    assert [(url, set(rels)) for url, rels in parse_links([value])] == expected


def test_it_reports_time_to_sunset_as_zero_once_passed() -> None:
    future = parse_deprecation(h(("Sunset", "Tue, 31 Dec 2024 23:59:59 GMT")), NOW)
    past = parse_deprecation(h(("Sunset", "Sat, 31 Dec 2022 23:59:59 GMT")), NOW)
    assert future is not None
    assert past is not None
    assert future.seconds_to_sunset(NOW) == DEC_2024 - NOW
    assert past.seconds_to_sunset(NOW) == 0.0


def test_it_treats_zoneless_http_dates_as_utc() -> None:
    assert parse_http_date("Fri, 30 Jun 2023 23:59:59") == JUN_2023


def test_it_summarises_a_run_as_json_able_signals() -> None:
    headers = h(
        ("x-ratelimit-limit", "5000"),
        ("x-ratelimit-remaining", "4999"),
        ("x-ratelimit-reset", "1700000600"),
        ("Deprecation", "@1688169599"),
        ("Sunset", "Tue, 31 Dec 2024 23:59:59 GMT"),
        ("Link", '<https://dev.example.com/v2>; rel="deprecation"'),
        ("Retry-After", "30"),
    )
    signals = signals_from_headers(headers, NOW)
    assert signals == {
        "quota_remaining": 4999,
        "quota_limit": 5000,
        "quota_reset": 1700000600,
        "quota_dialect": "x-ratelimit",
        "deprecated": True,
        "deprecation_source": "deprecation+sunset",
        "deprecated_at": JUN_2023,
        "sunset": DEC_2024,
        "deprecation_links": ["https://dev.example.com/v2"],
        "retry_after": 30,
    }
    assert json.loads(json.dumps(signals)) == signals


@pytest.mark.parametrize(
    "headers",
    [None, h(), h(("Content-Type", "text/html"), ("Retry-After", "later"))],
    ids=["no-response", "no-headers", "nothing-parsable"],
)
def test_it_summarises_a_quiet_response_as_no_signals(
    headers: CIMultiDictProxy[str] | None,
) -> None:
    assert signals_from_headers(headers, NOW) == {}


# One reset, ten minutes after NOW, as each dialect writes it.
RESET = NOW + 600
RESET_FORMS = [
    h(("RateLimit", '"default";r=5;t=600'), ("RateLimit-Policy", '"default";q=10;w=3600')),
    h(("RateLimit", "limit=10, remaining=5, reset=600")),
    h(("RateLimit-Limit", "10"), ("RateLimit-Remaining", "5"), ("RateLimit-Reset", "600")),
    h(("X-RateLimit-Limit", "10"), ("X-RateLimit-Remaining", "5"), ("X-RateLimit-Reset", "600")),
    h(("X-RateLimit-Remaining", "5"), ("X-RateLimit-Reset", f"{RESET:.0f}")),
    h(("X-RateLimit-Remaining", "5"), ("X-RateLimit-Reset", f"{RESET * 1000:.0f}")),
    h(("X-RateLimit-Remaining", "5"), ("X-RateLimit-Reset", formatdate(RESET, usegmt=True))),
    h(("X-RateLimit-Remaining", "5"), ("X-RateLimit-Reset", "2023-11-14T22:23:20Z")),
    h(("X-RateLimit-Remaining", "5"), ("X-RateLimit-Reset-After", "600")),
    h(("X-Rate-Limit-Remaining", "5"), ("X-Rate-Limit-Reset", f"{RESET:.0f}")),
]
RESET_IDS = [
    "ietf-t",
    "ietf-dict-reset",
    "ietf-legacy-delta",
    "x-ratelimit-delta",
    "github-epoch-s",
    "epoch-ms",
    "http-date",
    "iso-8601",
    "discord-reset-after",
    "x-rate-limit-epoch",
]


@pytest.mark.parametrize("headers", RESET_FORMS, ids=RESET_IDS)
def test_every_dialect_gives_the_same_absolute_reset(headers: CIMultiDictProxy[str]) -> None:
    quota = parse_quota(headers, NOW)
    assert quota is not None and quota.remaining == 5
    assert quota.reset_at == RESET


def test_a_leaky_bucket_has_no_reset_by_nature() -> None:
    quota = parse_quota(h(("X-Shopify-Shop-Api-Call-Limit", "32/40")), NOW)
    assert quota is not None and quota.reset_at is None
    assert quota.dialect in LEAKY_DIALECTS
