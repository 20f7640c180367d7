"""The Grafana dashboards and the compose deployment, checked against real things.

Every panel query must parse (promtool), may only name metrics a running daemon exports (its
real /metrics), and most panels must return data from a real Prometheus scraping a real
`intmon run` that watches the real sandbox. The deployment files are checked for what can be
checked without Docker: they parse, what they reference exists, and their ports agree.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.tls import make_pki

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "grafana" / "dashboards"
OVERVIEW = DASHBOARDS / "intmon-overview.json"
DRILL_DOWN = DASHBOARDS / "intmon-check.json"
DEPLOY = ROOT / "deploy"
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
INTMON = [sys.executable, "-m", "monitor"]

# What Grafana puts in place of its built-in variables, for promtool and for Prometheus.
# One minute covers every sample the short real-time run below produces.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1m",
    "__range_s": "60",
    "datasource": "prometheus",
}
# Panels that must show a non-zero value once the stack has run for a few seconds: the
# signals intmon exists for. Every other panel counts towards the share that returns data.
CORE = {
    "intmon-overview": {
        "Checks", "Up", "Error rate", "Latency p95", "429s", "Quota", "Quota remaining",
        "Deprecations", "Data freshness", "Certificate days left", "Firing alerts",
        "Alerts firing", "Notifications by result",
    },
    "intmon-check": {
        "State", "Up history", "Error rate", "Latency", "429s, throttled and skipped runs",
        "Quota", "Deprecation and sunset", "Days to sunset", "Data freshness",
        "Certificate", "Alerts firing", "Firing alerts",
    },
}  # fmt: skip
MIN_SHARE_WITH_DATA = 0.8
DAY = 86400


# -- the dashboards as data ------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    dashboard: str  # uid
    panel: str  # title, or "variable <name>" for a templating query
    ref: str
    expr: str  # as written in the dashboard, Grafana variables and all

    @property
    def where(self) -> str:
        return f"{self.dashboard} / {self.panel} [{self.ref}]"


def load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query", "")
    return str(query.get("query", "") if isinstance(query, dict) else query)


def as_promql(query: str) -> str:
    """A templating query as the PromQL Grafana sends: `label_values(sel, label)` -> sel."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
    return match.group(1) if match else query


def queries(path: Path) -> list[Query]:
    board = load(path)
    found = [
        Query(board["uid"], panel["title"], target["refId"], target["expr"])
        for panel in panels(board)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            found.append(
                Query(board["uid"], f"variable {variable['name']}", "-", variable_query(variable))
            )
    return found


ALL_QUERIES = queries(OVERVIEW) + queries(DRILL_DOWN)


def substitute(expr: str, **values: str) -> str:
    """Replace `$name`, `${name}` and `${name:format}` the way Grafana would."""
    known = {**BUILTINS, **values}

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in known:
            raise AssertionError(f"{expr!r}: no value for the variable ${name}")
        return known[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


# -- metric names in PromQL ------------------------------------------------------------------

# Words in PromQL that are neither metrics nor followed by "(" like function names.
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "start", "end"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:])[a-zA-Z_:][\w:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects. A small lexer, not a parser: promtool has
    already rejected what does not parse, so only names in valid PromQL matter here."""
    names = set(re.findall(r'__name__\s*=\s*"([^"]+)"', expr))
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges, subqueries
    text = _LABEL_LIST.sub(" ", text)  # by (check), on (check) group_left (rule), ...
    for match in _IDENTIFIER.finditer(text):
        word = match.group(0)
        if text[match.end() :].lstrip().startswith("(") or word.lower() in KEYWORDS:
            continue  # a function or an aggregation
        names.add(word)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (check) (rate(intmon_a_total{code=~"4..|5.."}[$__rate_interval]))',
            {"intmon_a_total"},
        ),
        ("histogram_quantile(0.99, sum by (le) (rate(intmon_b_bucket[1m])))", {"intmon_b_bucket"}),
        ("intmon_a / on (check) group_left (rule) intmon_b or vector(0)", {"intmon_a", "intmon_b"}),
        ("count(up == 0) offset 5m > bool 1e3", {"up"}),
        ('label_replace(x, "dst", "$1", "src", "(intmon_c)")', {"x"}),
        ('{__name__="intmon_d"} * 1000', {"intmon_d"}),
        ("(intmon_e - time()) / 86400", {"intmon_e"}),
        ("sum(intmon_f) without (instance)", {"intmon_f"}),
    ],
    ids=[
        "by-matchers-range",
        "quantile",
        "vector-matching",
        "keywords-numbers",
        "strings",
        "name-matcher",
        "time",
        "without",
    ],
)
def test_metric_names_finds_every_selected_metric_and_nothing_else(
    expr: str, names: set[str]
) -> None:
    assert metric_names(expr) == names


# -- static checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [OVERVIEW, DRILL_DOWN], ids=lambda p: p.stem)
def test_a_dashboard_has_unique_panel_ids_a_datasource_variable_and_no_overlaps(
    path: Path,
) -> None:
    board = load(path)
    assert board["uid"] == path.stem  # links between the dashboards use the uid
    assert 36 <= board["schemaVersion"] <= 41
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    titles = [panel["title"] for panel in panels(board)]
    assert len(titles) == len(set(titles)), "tests and people name panels by title"

    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    # Every query goes through the variable, so the dashboard imports into any Grafana.
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["targets"], f"{panel['title']}: no queries"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]

    taken: dict[tuple[int, int], str] = {}
    for panel in panels(board):
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_the_drill_down_has_a_check_variable_that_every_panel_filters_on() -> None:
    board = load(DRILL_DOWN)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    check = variables["check"]
    assert check["type"] == "query"
    assert variable_query(check) == "label_values(intmon_check_up, check)"
    assert check["datasource"]["uid"] == "${datasource}"
    for query in queries(DRILL_DOWN):
        if query.panel.startswith("variable"):
            continue
        for selector in re.findall(r"intmon_\w+(\{[^}]*\})?", query.expr):
            assert 'check="$check"' in selector, f"{query.where}: not filtered on $check"


def test_the_overview_links_each_check_to_its_drill_down() -> None:
    table = next(p for p in panels(load(OVERVIEW)) if p["title"] == "Checks")
    links = [
        link["url"]
        for override in table["fieldConfig"]["overrides"]
        if override["matcher"]["options"] == "check"
        for prop in override["properties"]
        if prop["id"] == "links"
        for link in prop["value"]
    ]
    assert links and links[0].startswith(f"/d/{load(DRILL_DOWN)['uid']}/")
    assert "var-check=${__value.raw}" in links[0]


# -- promtool --------------------------------------------------------------------------------


def need(binary: str) -> str:
    """The path of a system binary the test needs; CI must have it, a laptop may not."""
    if Path(binary).exists():
        return binary
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {binary} is missing: run scripts/system-deps.sh")
    pytest.skip(f"{binary} is not installed (apt-get install prometheus, or make system-deps)")


def promtool_errors(promtool: str, exprs: list[tuple[str, str]], tmp_path: Path) -> list[str]:
    """promtool's complaints about `(where, expr)` pairs, each naming its `where`: one
    recording rule per expression, one rule group per expression, the group named after it."""
    groups = [
        {"name": f"q{i}", "rules": [{"record": "dashboard_query", "expr": expr}]}
        for i, (_, expr) in enumerate(exprs)
    ]
    rules = tmp_path / "dashboard-queries.yml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    run = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    problems = [
        f"{exprs[int(index)][0]}: {message}"
        for index, message in re.findall(r'group "q(\d+)", rule \d+, [^:]*: (.*)', run.stderr)
    ]
    if run.returncode != 0 and not problems:
        problems.append(f"promtool failed: {run.stdout}{run.stderr}")
    return problems


def test_promtool_names_the_panel_of_a_query_that_does_not_parse(tmp_path: Path) -> None:
    promtool = need(PROMTOOL)
    problems = promtool_errors(
        promtool,
        [("good", "sum(rate(a_total[1m]))"), ("Broken panel", "sum(rate(a_total[1m])")],
        tmp_path,
    )
    assert len(problems) == 1
    assert problems[0].startswith("Broken panel: ") and "parse error" in problems[0]


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = need(PROMTOOL)
    exprs = [
        (q.where, as_promql(substitute(q.expr, check="healthy"))) for q in ALL_QUERIES
    ]  # fmt: skip
    assert len(exprs) > 40  # both dashboards were read
    assert promtool_errors(promtool, exprs, tmp_path) == []


# -- a real daemon, sandbox and Prometheus ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            get(url, timeout=0.5)
            return
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def started(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess that is stopped (SIGTERM, then SIGKILL) however the block ends."""
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass  # keep test output clean


@contextlib.contextmanager
def https_target(tmp: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS endpoint with a throwaway CA, so the certificate panels have a certificate.
    The sandbox speaks plain HTTP only. Yields its URL and the CA file."""
    pki = make_pki(tmp)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server.daemon_threads = True
    server.socket = pki.server_context().wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/", pki.ca_file
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def stack_config(tmp: Path, sandbox: str, secure: str, ca_file: Path, listen: str) -> str:
    """Every kind of signal, quickly: 200 ms intervals, a 2 s error-rate window, alerts to
    the sandbox's inbox without group wait."""
    host = sandbox.removeprefix("http://")
    sunset = int(time.time()) + 30 * DAY
    checks = [
        "{name: healthy, request: {url: 'S/healthy'}}",
        "{name: flaky, request: {url: 'S/flaky?every=2&fail=1'}, slo: {objective: 99%}}",
        # Down for 1 s, up for 1 s: its alert fires and resolves over and over, so deliveries
        # keep happening after Prometheus' first scrape and show in rate().
        "{name: flapping, request: {url: 'S/flaky?every=10&fail=5'}, alerts: {error_rate: {window: 1s, min_runs: 3, resolve_after: 1}}}",
        # Slower than its interval: skipped slots, and a latency to take quantiles of.
        "{name: slow, request: {url: 'S/slow?delay=0.5'}, expect: {max_latency: 300ms}}",
        "{name: error-in-200, request: {url: 'S/envelope/status-0'}}",
        "{name: quota, request: {url: 'S/quota/ietf?remaining=12&limit=100'}}",
        # Drains 40 a run from 100,000: a forecast that runs out long before the hour's reset.
        "{name: quota-drain, request: {url: 'S/quota/drain?limit=100000&cost=40&reset=3600'}}",
        f"{{name: deprecated, request: {{url: 'S/deprecated/epoch?sunset={sunset}&link=https://example.com/v2'}}}}",
        # Always 429 with a short Retry-After: 429s, throttled runs and a rate_limited alert.
        "{name: rate-limited, request: {url: 'S/retry-after?after=0.3&times=-1'}, alerts: {rate_limited: {window: 5s, warning: 1}}}",
        "{name: orders-sync, type: freshness, max_age: 1h, source: {type: http, url: 'S/sync/orders', timestamp: '$.updated_at'}}",
        "{name: stale-sync, type: freshness, max_age: 1h, source: {type: http, url: 'S/sync/orders?age=7200', timestamp: '$.updated_at'}}",
        f"{{name: secure, request: {{url: '{secure}'}}, tls_ca_file: '{ca_file}'}}",
    ]
    return "\n".join(
        [
            f"monitor: {{database: '{tmp / 'monitor.db'}', listen: '{listen}', heartbeat_url: '{sandbox}/healthy'}}",
            "defaults: {interval: 200ms, timeout: 2s, notify: [inbox], alerts: {error_rate: {window: 2s, min_runs: 3}}}",
            "alerting: {group_wait: 0s}",
            f"notifiers: [{{name: inbox, urls: ['json://{host}/notifications']}}]",
            "checks:",
            *(f"  - {check.replace('S/', sandbox + '/')}" for check in checks),
        ]
    )


@dataclass
class Stack:
    prometheus: str  # base URL
    daemon: str  # base URL
    checks: list[str]  # configured check names
    logs: Path  # where each process writes <name>.log

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()[-3000:]

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        answer = json.loads(get(url))
        assert answer["status"] == "success", f"{expr}: {answer}"
        data = answer["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def label_values(self, label: str, selector: str) -> list[str]:
        url = f"{self.prometheus}/api/v1/label/{label}/values?" + urllib.parse.urlencode(
            {"match[]": selector}
        )
        values: list[str] = json.loads(get(url))["data"]
        return values


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real sandbox, a real `intmon run` watching it and a real Prometheus scraping the
    daemon every second. All three are stopped when the module's tests are done."""
    prometheus = need(PROMETHEUS)
    tmp = tmp_path_factory.mktemp("stack")
    sandbox = f"http://127.0.0.1:{free_port()}"
    daemon = f"127.0.0.1:{free_port()}"
    web = f"127.0.0.1:{free_port()}"
    with contextlib.ExitStack() as running:
        secure, ca_file = running.enter_context(https_target(tmp))
        config = tmp / "monitor.yaml"
        config.write_text(stack_config(tmp, sandbox, secure, ca_file, daemon))
        scrape = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [{"job_name": "intmon", "static_configs": [{"targets": [daemon]}]}],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(scrape))
        # All three start at once: interpreter start-up dominates, and nothing here minds a
        # peer that is not up yet (a failed run or scrape is just one more sample).
        commands = {
            "sandbox": [*INTMON, "sandbox", "--listen", sandbox.removeprefix("http://")],
            "intmon": [*INTMON, "run", "--config", str(config)],
            "prometheus": [
                prometheus,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address={web}",
            ],
        }
        processes = {
            name: running.enter_context(started(command, tmp / f"{name}.log"))
            for name, command in commands.items()
        }
        for name, url in (
            ("sandbox", f"{sandbox}/healthy"),
            ("intmon", f"http://{daemon}/readyz"),
            ("prometheus", f"http://{web}/-/ready"),
        ):
            wait_for(url, processes[name], tmp / f"{name}.log")

        names = [check["name"] for check in yaml.safe_load(config.read_text())["checks"]]
        yield Stack(f"http://{web}", f"http://{daemon}", names, tmp)


def exported_names(exposition: str) -> set[str]:
    """Every series name the exposition makes Prometheus store. A family declared with no
    samples yet (a window statistic before its first figure) counts by its type's suffixes."""
    suffixes = {
        "counter": ["_total", "_created"],
        "histogram": ["_bucket", "_sum", "_count", "_created"],
        "summary": ["", "_sum", "_count", "_created"],
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, [""]))
    return names


def test_every_query_uses_only_metrics_the_daemon_exports(stack: Stack) -> None:
    exported = exported_names(get(f"{stack.daemon}/metrics").decode())
    assert "intmon_check_runs_total" in exported and "intmon_check_runs" not in exported
    unknown = [
        f"{q.where}: {name}"
        for q in ALL_QUERIES
        for name in sorted(metric_names(as_promql(q.expr)) - exported)
    ]
    assert unknown == [], "metrics intmon does not export"

    # And the other way round: what intmon exports, an operator can see on a dashboard.
    used = {name for q in ALL_QUERIES for name in metric_names(as_promql(q.expr))}
    families = {
        family.name
        for family in text_string_to_metric_families(get(f"{stack.daemon}/metrics").decode())
        if not family.name.endswith("_created")  # when a series began: not worth a panel
    }
    unseen = sorted(
        family
        for family in families
        if not any(name == family or name.startswith(family + "_") for name in used)
    )
    assert unseen == [], "metrics no dashboard shows"


@dataclass
class Outcome:
    dashboard: str
    panel: str
    values: list[float]  # every finite sample any of its queries returned

    @property
    def has_data(self) -> bool:
        return bool(self.values)

    @property
    def nonzero(self) -> bool:
        return any(value != 0 for value in self.values)


def evaluate(stack: Stack, path: Path, checks: list[str]) -> list[Outcome]:
    """Run every panel's queries as an instant query now. A drill-down panel has data when
    its queries do for at least one value of `$check`."""
    board = load(path)
    outcomes = []
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        values: list[float] = []
        for target in panel["targets"]:
            for check in checks:
                for series in stack.query(substitute(target["expr"], check=check)):
                    value = float(series["value"][1])
                    if math.isfinite(value):
                        values.append(value)
                if "$check" not in target["expr"] and "${check}" not in target["expr"]:
                    break  # the same query for every check
        outcomes.append(Outcome(board["uid"], panel["title"], values))
    return outcomes


def test_most_panels_return_data_from_a_real_prometheus_scraping_the_daemon(
    stack: Stack,
) -> None:
    # The check variable lists every configured check, as Grafana would offer them.
    check_variable = as_promql(
        variable_query(next(v for v in load(DRILL_DOWN)["templating"]["list"] if v["name"] == "check"))
    )  # fmt: skip
    deadline = time.monotonic() + 12
    while True:
        checks = stack.label_values("check", check_variable)
        outcomes = evaluate(stack, OVERVIEW, checks) + evaluate(stack, DRILL_DOWN, checks)
        core_missing = [
            f"{o.dashboard} / {o.panel}"
            for o in outcomes
            if o.panel in CORE[o.dashboard] and not o.nonzero
        ]
        # Rates need two scrapes and alerts a few runs: real time, polled, not slept through.
        if (not core_missing and sorted(checks) == sorted(stack.checks)) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.5)

    assert sorted(checks) == sorted(stack.checks), f"the daemon's log: {stack.log('intmon')}"
    assert core_missing == [], f"core panels without a non-zero value; {stack.log('intmon')}"
    for dashboard, core in CORE.items():
        titles = {o.panel for o in outcomes if o.dashboard == dashboard}
        assert core <= titles, f"{dashboard}: core panels renamed? {sorted(core - titles)}"
    empty = [f"{o.dashboard} / {o.panel}" for o in outcomes if not o.has_data]
    share = 1 - len(empty) / len(outcomes)
    assert share >= MIN_SHARE_WITH_DATA, f"only {share:.0%} of panels have data; empty: {empty}"
    # Printed for the record: which panels a few seconds of the sandbox cannot fill.
    print(f"\n{len(outcomes) - len(empty)}/{len(outcomes)} panels with data; empty: {empty}")

    # A few figures the sandbox makes exact, so "has data" also means "the right data".
    expected = [
        ('intmon_ratelimit_remaining{check="quota"}', 12, 12),
        ('intmon_ratelimit_remaining{check="quota"} / intmon_ratelimit_limit{check="quota"}', 0.12, 0.12),
        ('(intmon_sunset_timestamp_seconds{check="deprecated"} - time()) / 86400', 29.9, 30),
        ('intmon_freshness_age_seconds{check="stale-sync"}', 7200, 7300),
        ('(intmon_certificate_expiry_timestamp_seconds{check="secure"} - time()) / 86400', 9, 10),
    ]  # fmt: skip
    for expr, low, high in expected:
        assert low <= float(stack.query(expr)[0]["value"][1]) <= high, expr
    firing = {s["metric"]["check"] for s in stack.query("intmon_alert_firing == 1")}
    assert {"flaky", "deprecated", "rate-limited", "stale-sync"} <= firing


# -- the compose deployment ------------------------------------------------------------------


def compose() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return spec


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (relative to deploy/) of a service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = source
    return mounts


def test_the_compose_file_references_files_that_exist_and_agrees_on_ports() -> None:
    spec = compose()
    services = spec["services"]
    assert {"intmon", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"]).resolve() == ROOT, name
            assert (ROOT / build["dockerfile"]).is_file(), f"{name}: no {build['dockerfile']}"
        for target, source in bind_mounts(service).items():
            assert (DEPLOY / source).exists(), f"{name}: {source} (mounted at {target})"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("."):
                assert source in spec["volumes"], f"{name}: undeclared volume {source}"

    # intmon reads its config from the read-only mount and keeps its database in a volume.
    intmon = services["intmon"]
    config_dir = next(t for t, s in bind_mounts(intmon).items() if s == "./config")
    assert f"{config_dir}:ro" in " ".join(intmon["volumes"])
    config_path = intmon["command"][intmon["command"].index("--config") + 1]
    assert config_path.startswith(config_dir + "/")
    config = yaml.safe_load((DEPLOY / "config" / Path(config_path).name).read_text())
    data_dir = next(v.split(":")[1] for v in intmon["volumes"] if v.startswith("intmon-data:"))
    assert config["monitor"]["database"].startswith(data_dir + "/")
    host, port = config["monitor"]["listen"].rsplit(":", 1)
    assert host == "0.0.0.0", "Prometheus scrapes intmon from another container"
    assert f"127.0.0.1:{port}:{port}" in intmon["ports"]

    # Prometheus scrapes that port on the intmon service.
    prometheus_config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = [
        target
        for job in prometheus_config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    assert targets == [f"intmon:{port}"]
    assert "./prometheus.yml" in bind_mounts(services["prometheus"]).values()

    # Every URL the config watches is a compose service on the port it listens on.
    sandbox = services["sandbox"]
    listen = sandbox["command"][sandbox["command"].index("--listen") + 1]
    assert listen.startswith("0.0.0.0:")
    watched = yaml.safe_dump(config["checks"] + config["notifiers"])  # comments left out
    urls = re.findall(r"(?:https?|json)://([\w.-]+:\d+)", watched)
    assert urls and set(urls) == {f"sandbox:{listen.rsplit(':', 1)[1]}"}

    # Grafana gets the provisioning and the dashboards where the provisioning says.
    grafana = bind_mounts(services["grafana"])
    provisioning = next(t for t, s in grafana.items() if s == "../grafana/provisioning")
    dashboards = next(t for t, s in grafana.items() if s == "../grafana/dashboards")
    assert provisioning == "/etc/grafana/provisioning"
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/intmon.yaml").read_text())
    assert [p["options"]["path"] for p in provider["providers"]] == [dashboards]
    assert provider["providers"][0]["type"] == "file"
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards}/{OVERVIEW.name}"

    # The datasource points at the prometheus service on Prometheus' port.
    datasources = yaml.safe_load(
        (ROOT / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )
    [datasource] = datasources["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in services["prometheus"]["ports"]


def test_the_compose_intmon_config_passes_intmon_validate() -> None:
    run = subprocess.run(
        [*INTMON, "validate", "--config", str(DEPLOY / "config" / "monitor.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr


def test_the_compose_prometheus_config_passes_promtool() -> None:
    run = subprocess.run(
        [need(PROMTOOL), "check", "config", str(DEPLOY / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
