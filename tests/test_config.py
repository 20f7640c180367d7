from __future__ import annotations

from pathlib import Path

import pytest

from checks.http import HttpCheck
from monitor.config.loader import load_config, parse_config
from monitor.core.errors import ConfigError
from monitor.core.units import format_duration, parse_duration, parse_ratio, parse_size

TESTDATA = Path(__file__).parent / "testdata"

INVALID = [
    ("invalid-duration.yml", "7: checks[2].interval: 'often' is not a duration"),
    ("invalid-unknown-key.yml", "5: checks[0].request.methd: unknown key"),
    (
        "invalid-unset-env.yml",
        "6: checks[0].request.headers.Authorization: "
        "environment variable INTMON_TEST_UNSET_TOKEN is not set",
    ),
    ("invalid-duplicate-name.yml", "4: checks[1].name: duplicate check name 'orders'"),
    ("invalid-yaml.yml", "4: invalid YAML: expected ',' or '}', but got '-'"),
    ("invalid-type.yml", "3: checks[0].type: unknown check type 'htp'"),
    ("invalid-status.yml", "5: checks[0].expect.status: '2x' is not a status code"),
    ("invalid-jsonpath.yml", "5: checks[0].expect.json: '$.items[' is not a valid JSONPath"),
    ("invalid-url.yml", "3: checks[0].request.url: 'ftp://example.com/file' is not an http(s) URL"),
    ("invalid-missing-request.yml", "2: checks[0].request: required key is missing"),
    ("invalid-name.yml", "2: checks[0].name: 'Orders API' must match ^[a-z0-9_.-]+$"),
    ("invalid-defaults-key.yml", "2: defaults.intervl: unknown key"),
    ("invalid-listen.yml", "2: monitor.listen: 'localhost' is not host:port"),
    (
        "invalid-external-url.yml",
        "3: monitor.external_url: 'intmon.example.com/ops' is not an http(s) URL",
    ),
    ("invalid-log-format.yml", "2: monitor.log_format: 'yaml' is not allowed: 'text' or 'json'"),
    (
        "invalid-database.yml",
        "2: monitor.database: not a usable SQLAlchemy URL: "
        "Can't load plugin: sqlalchemy.dialects:nosuchdb",
    ),
    ("invalid-negative.yml", "3: checks[0].timeout: -5 is not a duration: it is negative"),
    ("invalid-top-level.yml", "1: monitr: unknown key"),
    ("invalid-notify.yml", "7: checks[0].notify[1]: no notifier named 'pager'"),
    ("invalid-duplicate-key.yml", "4: invalid YAML: duplicate key 'interval'"),
    ("invalid-encoding.yml", "3: not UTF-8 text: save the file as UTF-8"),
    (
        "invalid-degraded-latency.yml",
        "4: checks[0].expect: degraded_latency (2s) must be below max_latency (1s): "
        "past max_latency the run fails",
    ),
    (
        "invalid-request-id-header.yml",
        "4: checks[0].request_id_headers[0]: 'X Request Id' is not an HTTP header name",
    ),
    # Hostile files: each of these once ended in a traceback, a hang or a value no loop can use.
    ("invalid-utf16.yml", "1: not UTF-8 text: save the file as UTF-8"),
    ("invalid-control-character.yml", "3: invalid YAML: character 0x0 is not allowed in YAML text"),
    ("invalid-deep.yml", "5: checks[0].expect.json.$.a[0][0][0]: nested deeper than 64 levels"),
    ("invalid-recursive-alias.yml", "5: checks[0].expect.json: alias *check refers to itself"),
    ("invalid-alias-bomb.yml", "7: f: aliases expand to more than 100000 values (an alias bomb?)"),
    (
        "invalid-complex-key.yml",
        "6: checks[0].request.headers: a key must be text, not a list or mapping",
    ),
    ("invalid-key-type.yml", "6: checks[0].expect.headers: key 'on' is a boolean: quote it"),
    (
        "invalid-huge-number.yml",
        "3: checks[0].interval: " + "9" * 39 + "… is not a duration: longer than 100 years",
    ),
    (
        "invalid-digits.yml",
        "3: checks[0].interval: '"
        + "1" * 38
        + "… is not a valid int: Exceeds the limit (4300 digits)",
    ),
    ("invalid-infinite.yml", "4: checks[0].timeout: inf is not a duration: not a finite number"),
    (
        "invalid-size.yml",
        "4: checks[0].max_body: '" + "9" * 38 + "… is not a size: larger than 1TiB",
    ),
    (
        "invalid-ratio.yml",
        "5: checks[0].alerts.error_rate.warning: nan is not a ratio between 0 and 1",
    ),
    (
        "invalid-inhibit-source.yml",
        "4: alerting.inhibit[1].source: unknown alert rule 'ratelimited' (known: error_rate, "
        "latency_p95, rate_limited, consecutive_failures, deprecation, sunset, certificate, "
        "freshness, burn_rate, schema_drift, quota, quota_exhaustion)",
    ),
    (
        "invalid-inhibit-target.yml",
        "4: alerting.inhibit[0].target[1]: 'rate_limited' cannot be inhibited "
        "(rules that can: error_rate, latency_p95, consecutive_failures, burn_rate)",
    ),
    (
        "invalid-inhibit-classes.yml",
        "4: alerting.inhibit[0].classes[1]: unknown error class '5xx' (known: timeout, connect, "
        "tls, http_4xx, http_5xx, rate_limited, assertion, body_error, invalid_response, auth, "
        "internal)",
    ),
    (
        "invalid-json-schema.yml",
        "5: checks[0].expect.json_schema: properties.total.type: 'numbr' is not valid under any "
        "of the given schemas (not a valid JSON Schema)",
    ),
    (
        "invalid-json-schema-file.yml",
        "5: checks[0].expect.json_schema: cannot read 'schemas/missing.json': "
        "No such file or directory",
    ),
    (
        "invalid-error-classes.yml",
        "4: notifiers[0].error_classes[1]: unknown error class 'tsl' (known: timeout, connect, "
        "tls, http_4xx, http_5xx, rate_limited, assertion, body_error, invalid_response, auth, "
        "internal)",
    ),
    (
        "invalid-slo-objective.yml",
        "5: checks[0].slo.objective: 100% leaves no error budget: use a share below it, e.g. 99.9%",
    ),
    ("invalid-slo-window.yml", "6: checks[0].slo.window: 180d is outside 1h to 90d"),
    (
        "invalid-burn-rate-without-slo.yml",
        "5: checks[0].alerts.burn_rate: needs the check's slo: (e.g. slo: {objective: 99.9%})",
    ),
    (
        "invalid-timestamp.yml",
        "3: silences[0].start: '2026-13-45' is not a valid timestamp: month must be in 1..12",
    ),
    # Who may see and change what: refused at load, never at the first request.
    (
        "invalid-basic-auth-cost.yml",
        "4: monitor.web.basic_auth_users.ops: bcrypt cost 03 is outside 4..31",
    ),
    (
        "invalid-basic-auth-hash.yml",
        "4: monitor.web.basic_auth_users.ops: not a bcrypt hash ($2b$<cost>$ and 53 characters): "
        "see intmon hash-password",
    ),
    (
        "invalid-public-path.yml",
        "3: monitor.web.public[1]: 'status' is not a path (it must start with /)",
    ),
    (
        "invalid-tls-files.yml",
        "3: monitor.web.tls_server_config: cannot read /nonexistent/intmon/tls.crt: "
        "No such file or directory",
    ),
    (
        "invalid-unsigned-heartbeat.yml",
        "7: checks[0].source.secret: required: monitor.listen 0.0.0.0 is not loopback, and "
        "without a secret anyone who reaches it can push this check's heartbeat",
    ),
]


@pytest.mark.parametrize(("name", "expected"), INVALID, ids=[n for n, _ in INVALID])
def test_each_invalid_file_is_reported_with_file_line_and_key(name: str, expected: str) -> None:
    path = str(TESTDATA / name)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value).startswith(f"{path}:{expected}")


def test_every_invalid_file_in_testdata_has_an_expectation() -> None:
    assert {p.name for p in TESTDATA.glob("invalid-*.yml")} == {name for name, _ in INVALID}


def test_all_problems_are_reported_in_one_pass() -> None:
    text = """
checks:
  - name: a
    interval: often
    request: {url: "http://x/"}
  - name: b
    request: {url: "http://x/", bogus: 1}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.yaml", env={})
    assert [i.path for i in info.value.issues] == ["checks[0].interval", "checks[1].request.bogus"]
    assert [i.line for i in info.value.issues] == [4, 7]


def test_a_missing_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config("/nonexistent/monitor.yaml")


def test_defaults_are_merged_into_every_check_and_per_check_values_win() -> None:
    text = """
defaults:
  interval: 30s
  timeout: 2s
  request: {headers: {Accept: application/json, X-Team: core}}
checks:
  - name: a
    request: {url: "http://x/a"}
  - name: b
    interval: 5s
    request: {url: "http://x/b", headers: {X-Team: billing}}
"""
    config = parse_config(text, env={})
    a, b = config.checks
    assert isinstance(a, HttpCheck)
    assert isinstance(b, HttpCheck)
    assert (a.interval, a.timeout, b.interval, b.timeout) == (30, 2, 5, 2)
    assert a.request.headers == {"Accept": "application/json", "X-Team": "core"}
    assert b.request.headers == {"Accept": "application/json", "X-Team": "billing"}


def test_env_references_are_substituted_and_remembered_as_secrets() -> None:
    text = """
checks:
  - name: a
    request:
      url: "http://x/?key=${API_KEY}"
      headers: {Authorization: "Bearer ${TOKEN}", X-Region: "${REGION:-eu}"}
"""
    config = parse_config(text, env={"API_KEY": "k-123456", "TOKEN": "t-abcdef"})
    check = config.checks[0]
    assert isinstance(check, HttpCheck)
    assert check.request.url == "http://x/?key=k-123456"
    assert check.request.headers["X-Region"] == "eu"
    assert config.secrets == {"k-123456", "t-abcdef"}


def test_a_double_dollar_is_a_literal_dollar() -> None:
    text = 'checks: [{name: a, request: {url: "http://x/", headers: {X-P: "$${NOT_ENV}"}}}]'
    check = parse_config(text, env={}).checks[0]
    assert isinstance(check, HttpCheck)
    assert check.request.headers["X-P"] == "${NOT_ENV}"


def test_an_empty_file_is_a_valid_config_with_defaults() -> None:
    config = parse_config("", env={})
    assert config.checks == []
    assert config.monitor.listen == "127.0.0.1:9464"
    assert config.monitor.database_url == "sqlite:///monitor.db"


def test_the_bundled_configs_are_valid() -> None:
    root = Path(__file__).parent.parent / "config"
    for path in root.glob("*.yaml"):
        load_config(str(path), env={"EXAMPLE_TOKEN": "x" * 8, "HEARTBEAT_SECRET": "s" * 16})


DURATIONS = [
    ("250ms", 0.25),
    ("30s", 30),
    ("5m", 300),
    ("1h", 3600),
    ("7d", 604800),
    ("1h30m", 5400),
    ("1.5s", 1.5),
    (10, 10),
    (0.5, 0.5),
]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS, ids=[str(t) for t, _ in DURATIONS])
def test_durations_parse_to_seconds(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["often", "5 minutes", "1h30", "", "m5", True, -1, "5x"])
def test_bad_durations_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "ratio"), [("5%", 0.05), ("0.05", 0.05), (0.05, 0.05), ("100%", 1.0), (0, 0.0)]
)
def test_ratios_accept_percentages_and_fractions(text: object, ratio: float) -> None:
    assert parse_ratio(text) == pytest.approx(ratio)


@pytest.mark.parametrize("bad", ["5", 5, "lots%", "150%", True])
def test_ratios_out_of_range_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match=r"ratio|percentage"):
        parse_ratio(bad)


@pytest.mark.parametrize(("text", "size"), [("1MiB", 1048576), ("512kB", 512000), (100, 100)])
def test_sizes_parse_to_bytes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250ms"), (5400, "1h30m"), (0, "0ms"), (1.5, "1.5s"), (12.345, "12.3s"),
     (60, "1m"), (90061, "1d1h1m1s"), (-30, "-30s")],
    ids=["ms", "h-m", "zero", "fraction-of-a-second-kept", "three-digits", "minute", "all-units",
         "negative"],
)  # fmt: skip
def test_durations_format_back_for_messages(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250ms"), (12.345, "12s"), (90, "1m30s"), (120, "2m"), (5400, "90m"), (3600, "1h"),
     (7300, "2h"), (45.2 * 86400, "45d"), (-3 * 86400, "-3d")],
    ids=["ms", "whole-seconds", "under-two-minutes", "two-minutes", "under-two-hours",
         "whole-hour", "two-hours", "days", "negative"],
)  # fmt: skip
def test_coarse_durations_round_to_one_unit_once_there_are_two_of_it(
    seconds: float, text: str
) -> None:
    assert format_duration(seconds, coarse=True) == text
