"""Log lines: JSON for log shippers (one object a line, with the facts of failed runs, alert
transitions and sent notifications), text for people; secrets masked in both."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.core.logs import fields, setup_logging
from monitor.core.redact import Redactor
from tests.conftest import start_app
from tests.receiver import Receiver
from tests.test_canary import CANARY, ENV, find, reflecting_api
from tests.test_cli import free_port, intmon_run
from tests.waiting import eventually

CHECKS = ("bearer", "url-token")
FAILURES = ("firing", "consecutive_failures")


def write_config(tmp_path: Path, api: str, receiver: Receiver, listen: str) -> Path:
    notifier = f"json://user:${{INTMON_CANARY}}@127.0.0.1:{receiver.port}/hook"
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f"monitor: {{database: '{tmp_path / 'm.db'}', listen: '{listen}', log_level: debug,"
        " log_format: json}\n"
        "alerting: {group_wait: 0s}\n"
        f"notifiers: [{{name: chat, urls: ['{notifier}']}}]\n"
        "defaults: {interval: 100ms, notify: [chat], alerts: {consecutive_failures: {critical: 2}}}\n"
        "checks:\n"
        f"  - {{name: bearer, request: {{url: '{api}/reflect'}},"
        " auth: {type: bearer, token: '${INTMON_CANARY}'}}\n"
        f"  - {{name: url-token, request: {{url: '{api}/reflect?token=${{INTMON_CANARY}}'}}}}\n"
    )
    return config


async def test_json_logs_are_one_object_a_line_with_the_facts_and_no_secret(
    tmp_path: Path, receiver: Receiver
) -> None:
    runner, api = await start_app(reflecting_api())
    listen = f"127.0.0.1:{free_port()}"
    config = write_config(tmp_path, api, receiver, listen)
    try:
        async with intmon_run(config, listen, ENV) as exited:
            await eventually("both checks paged", lambda: paged(receiver) == set(CHECKS), 10)
    finally:
        await runner.cleanup()
    log = exited.stderr
    assert exited.code == 0, log[-2000:]
    entries = [json.loads(line) for line in log.splitlines()]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= entry.keys() for entry in entries)
    assert all(datetime.fromisoformat(entry["ts"]) for entry in entries)
    events: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        events.setdefault(entry.get("event", ""), []).append(entry)

    failed = events["run_failed"]
    assert {e["check"] for e in failed} == set(CHECKS)
    for entry in failed:
        assert entry["error_class"] and entry["reason"] and entry["status"] == 200
        assert isinstance(entry["latency"], float) and "request_id" in entry
    # The API also announces a Sunset, which fires alerts of its own.
    firing = [e for e in events["alert"] if (e["kind"], e["rule"]) == FAILURES]
    assert {(e["check"], e["severity"]) for e in firing} == {(name, "critical") for name in CHECKS}
    assert all(datetime.fromisoformat(e["since"]) for e in firing)
    sent = {e["notification_id"] for e in events["notification_sent"]}
    assert {post["notification_id"] for post in receiver.posts} <= sent
    # The id a transition names is the one its notification went out with.
    assert {e["notification_ids"]["chat"] for e in firing} <= sent
    assert "***" in log and not find(log), find(log)


def paged(receiver: Receiver) -> set[str]:
    """The checks whose consecutive_failures FIRING has arrived."""
    return {
        name
        for post in receiver.posts
        for name in CHECKS
        if post["title"] == f"FIRING: {name} consecutive_failures (critical)"
    }


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """setup_logging replaces the root logger's handlers, as a process would; put them back."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield root
    root.handlers[:], root.level = saved


@pytest.mark.parametrize("form", ["text", "json"])
def test_both_formats_mask_secrets_in_the_message_fields_and_traceback(
    form: str, root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("info", form, Redactor([CANARY]))  # type: ignore[arg-type]
    log = logging.getLogger("intmon.test")

    def call() -> None:
        raise ValueError(f"rejected {CANARY}")

    try:
        call()
    except ValueError:
        log.exception("call with %s failed", CANARY, extra=fields("probe", token=CANARY))
    line = capsys.readouterr().err
    assert "***" in line and not find(line)
    if form == "text":
        assert " ERROR intmon.test: call with *** failed\n" in line
        assert "ValueError: rejected ***" in line
    else:
        entry = json.loads(line)
        assert (entry["level"], entry["logger"], entry["message"]) == (
            "error",
            "intmon.test",
            "call with *** failed",
        )
        assert (entry["event"], entry["token"]) == ("probe", "***")
        assert entry["exception"].endswith("ValueError: rejected ***")
