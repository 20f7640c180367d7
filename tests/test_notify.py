"""Message text, routing, grouping and Apprise delivery to a real local json:// receiver."""

from __future__ import annotations

import re

import pytest

from monitor.alerting.machine import Intent, Kind
from monitor.alerting.notify import (
    ID_FIELD,
    Notify,
    Queued,
    group,
    notification_id,
    render,
    render_group,
    with_id,
)
from monitor.config.alerting import AlertingSettings
from monitor.core.errors import DeliveryError
from monitor.core.redact import Redactor
from tests.fakes import Notifier
from tests.receiver import Receiver

NOW = 1_700_000_000.0


def intent(kind: Kind = Kind.FIRING, severity: str = "critical", **extra: object) -> Intent:
    values: dict[str, object] = {
        "kind": kind,
        "check": "orders-api",
        "rule": "error_rate",
        "severity": severity,
        "value": 0.5,
        "threshold": 0.05,
        "summary": "error rate 50% over 5m (10 runs) >= critical 5%",
        "since": NOW - 300,
        "at": NOW,
        "last_error": "http_5xx: HTTP 503 from https://api.example.com",
    }
    values.update(extra)
    return Intent(**values)  # type: ignore[arg-type]


def test_a_firing_message_names_check_rule_state_value_threshold_since_and_error() -> None:
    title, body, kind = render(intent(migration_link="https://example.com/migrate"))
    assert title == "FIRING: orders-api error_rate (critical)"
    assert body.splitlines() == [
        "error rate 50% over 5m (10 runs) >= critical 5%",
        "Since: 2023-11-14 22:08:20 UTC (5m ago)",
        "Last error: http_5xx: HTTP 503 from https://api.example.com",
        "Migration: https://example.com/migrate",
    ]
    assert kind == "failure"


@pytest.mark.parametrize(
    ("kind", "severity", "title", "notify_type"),
    [
        (Kind.FIRING, "warning", "FIRING: orders-api error_rate (warning)", "warning"),
        (
            Kind.ESCALATED,
            "critical",
            "FIRING: orders-api error_rate (critical, escalated)",
            "failure",
        ),
        (Kind.REMINDER, "warning", "FIRING: orders-api error_rate (warning, still)", "warning"),
        (Kind.RESOLVED, "critical", "RESOLVED: orders-api error_rate", "success"),
    ],
    ids=["firing-warning", "escalated", "reminder", "resolved"],
)
def test_title_and_apprise_type_follow_state_and_severity(
    kind: Kind, severity: str, title: str, notify_type: str
) -> None:
    rendered = render(intent(kind, severity))
    assert (rendered[0], rendered[2]) == (title, notify_type)


def test_an_alert_firing_on_the_run_that_started_it_says_just_now_not_0ms_ago() -> None:
    _, body, _ = render(intent(since=NOW))
    assert "Since: 2023-11-14 22:13:20 UTC (just now)" in body.splitlines()
    assert "ms ago" not in body


def test_the_request_id_gets_a_line_unless_the_last_error_already_quotes_it() -> None:
    _, body, _ = render(intent(request_id="req-7f3a"))
    assert "Request id: req-7f3a" in body.splitlines()
    quoted = intent(last_error="http_5xx: HTTP 503 (request id req-7f3a)", request_id="req-7f3a")
    assert body.count("req-7f3a") == render(quoted)[1].count("req-7f3a") == 1


@pytest.mark.parametrize("kind", [Kind.FIRING, Kind.RESOLVED], ids=["firing", "resolved"])
def test_both_ends_of_an_alert_link_to_the_checks_page(kind: Kind) -> None:
    link = "https://intmon.example.com/checks/orders-api"
    assert render(intent(kind), link)[1].splitlines()[-1] == f"Check page: {link}"
    assert "Check page" not in render(intent(kind))[1]


def test_a_resolved_message_says_how_long_it_lasted_and_how_it_is_now() -> None:
    _, body, _ = render(
        intent(Kind.RESOLVED, summary="error rate 0% over 5m (10 runs) < warning 1%")
    )
    assert "Resolved after 5m (was critical, firing since 2023-11-14 22:08:20 UTC)." in body
    assert "Now: error rate 0% over 5m (10 runs) < warning 1%" in body


@pytest.mark.parametrize(
    ("severity", "notify", "routed"),
    [
        ("warning", ["chat", "pager"], ["chat"]),
        ("critical", ["chat", "pager"], ["chat", "pager"]),
        ("critical", ["pager"], ["pager"]),
        ("critical", [], []),
    ],
    ids=["warning-skips-critical-only", "critical-reaches-both", "only-listed", "no-notify-list"],
)
def test_routing_follows_the_notify_list_and_min_severity(
    severity: str, notify: list[str], routed: list[str]
) -> None:
    notifiers = [
        Notifier("chat", ["json://127.0.0.1:9/a"]),
        Notifier("pager", ["json://127.0.0.1:9/b"], "critical"),
    ]
    notify_ = Notify(notifiers, Redactor())
    assert notify_.route(intent(severity=severity), notify) == routed


ROUTES = [
    ("auth", ["everyone", "credentials"]),
    ("tls", ["everyone", "credentials"]),
    ("http_5xx", ["everyone", "owners"]),
    ("timeout", ["everyone"]),
    (None, ["everyone"]),  # sunset, certificate, ...: no failure to route by
]


@pytest.mark.parametrize(("cause", "routed"), ROUTES, ids=[str(c) for c, _ in ROUTES])
def test_a_notifier_with_error_classes_gets_only_alerts_of_those_causes(
    cause: str | None, routed: list[str]
) -> None:
    notifiers = [
        Notifier("everyone", ["json://127.0.0.1:9/a"]),
        Notifier("credentials", ["json://127.0.0.1:9/b"], error_classes=("auth", "tls")),
        Notifier("owners", ["json://127.0.0.1:9/c"], "critical", error_classes=("http_5xx",)),
    ]
    notify = Notify(notifiers, Redactor())
    names = ["everyone", "credentials", "owners"]
    assert notify.route(intent(cause=cause), names) == routed
    # min_severity still holds: a warning of a 5xx storm does not reach critical-only owners.
    assert "owners" not in notify.route(intent(severity="warning", cause=cause), names)


def test_messages_skip_silenced_intents_redact_secrets_and_hold_provider_firings() -> None:
    notify = Notify(
        [Notifier("chat", ["json://127.0.0.1:9/a"])],
        Redactor(["s3cr3t-token"]),
        AlertingSettings(group_wait=30),
    )
    intents = [
        intent(last_error="auth: token s3cr3t-token rejected", provider="stripe"),
        intent(Kind.RESOLVED, check="quiet", silenced=True),
        intent(Kind.RESOLVED, check="billing", provider="stripe"),
    ]
    messages = notify.messages(
        intents, {"orders-api": ["chat"], "quiet": ["chat"], "billing": ["chat"]}
    )
    assert [(m.check, m.kind, m.group_key, m.not_before - m.created_at) for m in messages] == [
        ("orders-api", "FIRING", "stripe", 30),
        ("billing", "RESOLVED", None, 0),
    ]
    assert "s3cr3t-token" not in messages[0].body
    assert "Last error: auth: token *** rejected" in messages[0].body
    assert messages[0].expires_at == NOW + 24 * 3600
    assert messages[0].dedup_key.endswith("/chat")


def q(id_: int, created: float, due: bool = True, key: str | None = "stripe") -> Queued:
    return Queued(id_, "chat", key, created, due)


@pytest.mark.parametrize(
    ("rows", "batches"),
    [
        ([q(1, 0, key=None), q(2, 0, key=None)], [[1], [2]]),
        ([q(1, 0), q(2, 10, due=False), q(3, 29, due=False)], [[1, 2, 3]]),
        ([q(1, 0), q(2, 31, due=False)], [[1]]),
        ([q(1, 0, due=False), q(2, 5, due=False)], []),
        ([q(1, 0), q(2, 0, due=False, key="github")], [[1]]),
    ],
    ids=[
        "ungrouped-alone",
        "within-group-wait",
        "after-group-wait",
        "nothing-due",
        "other-provider",
    ],
)
def test_grouping_batches_one_provider_within_group_wait(
    rows: list[Queued], batches: list[list[int]]
) -> None:
    assert [[r.id for r in b] for b in group(rows, 30)] == batches


def test_a_grouped_message_lists_every_alert_and_takes_the_worst_type() -> None:
    title, body, kind = render_group(
        "stripe",
        [
            ("FIRING: charges error_rate (warning)", "a", "warning"),
            ("FIRING: refunds latency_p95 (critical)", "b", "failure"),
        ],
    )
    assert title == (
        "FIRING: 2 alerts for stripe: charges error_rate (warning), refunds latency_p95 (critical)"
    )
    assert (
        body
        == "FIRING: charges error_rate (warning)\na\n\nFIRING: refunds latency_p95 (critical)\nb"
    )
    assert kind == "failure"


async def test_send_delivers_through_apprise_with_its_id_and_counts_the_attempt(
    receiver: Receiver,
) -> None:
    results: list[tuple[str, str]] = []
    notify = Notify(
        [Notifier("chat", [receiver.url, receiver.url + "?format=text"])],
        Redactor(),
        on_result=lambda n, r: results.append((n, r)),
    )
    await notify.send("chat", "FIRING: a b (warning)", "body", "warning", nid="intmon-1f")
    message = "body\n\nNotification id: intmon-1f"
    expected = ("FIRING: a b (warning)", message, "warning", "intmon-1f")
    assert [(p["title"], p["message"], p["type"], p[ID_FIELD]) for p in receiver.posts] == [
        expected,
        expected,
    ]
    assert results == [("chat", "success")]
    notify.close()


def test_the_id_is_the_same_for_the_same_rows_in_any_order_and_differs_otherwise() -> None:
    assert notification_id(["a/1", "b/2"]) == notification_id(["b/2", "a/1"])
    assert notification_id(["a/1"]) != notification_id(["a/1", "b/2"])
    assert re.fullmatch(r"intmon-[0-9a-f]{20}", notification_id(["a/1"]))


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("json://h/p", "json://h/p?:notification_id=intmon-9"),
        ("jsons://h/p?format=text", "jsons://h/p?format=text&:notification_id=intmon-9"),
        ("slack://a/b/c", "slack://a/b/c"),
    ],
    ids=["json", "json-with-query", "no-payload-fields"],
)
def test_the_id_becomes_a_payload_field_where_apprise_has_them(url: str, sent: str) -> None:
    assert with_id(url, "intmon-9") == sent


async def test_a_503_is_a_failed_delivery(receiver: Receiver) -> None:
    results: list[tuple[str, str]] = []
    notify = Notify(
        [Notifier("chat", [receiver.url])],
        Redactor(),
        on_result=lambda n, r: results.append((n, r)),
    )
    receiver.failing = True
    with pytest.raises(
        DeliveryError, match=r"Failed to send JSON POST notification: .*503"
    ) as info:
        await notify.send("chat", "t", "b", "failure", nid="intmon-1")
    assert not info.value.permanent
    assert results == [("chat", "failure")]
    notify.close()


async def test_an_unknown_notifier_is_a_permanent_failure() -> None:
    notify = Notify([], Redactor())
    with pytest.raises(DeliveryError, match="no notifier named 'gone'") as info:
        await notify.send("gone", "t", "b", "warning", nid="intmon-1")
    assert info.value.permanent


@pytest.mark.parametrize(
    ("failing", "delivered"), [(False, True), (True, False)], ids=["up", "down"]
)
async def test_notify_test_reports_whether_the_message_arrived_and_why_not(
    receiver: Receiver, failing: bool, delivered: bool, caplog: pytest.LogCaptureFixture
) -> None:
    notify = Notify([Notifier("chat", [receiver.url])], Redactor())
    receiver.failing = failing
    assert await notify.test("chat") is delivered
    assert len(receiver.posts) == int(delivered)
    notify.close()
    said = [r.getMessage() for r in caplog.records if r.name == "monitor.alerting.notify"]
    assert said == ([] if delivered else [
        "test notification to chat failed: Failed to send JSON POST notification: "
        "Servers are overloaded., error=503."
    ])  # fmt: skip


def test_a_url_apprise_cannot_use_is_rejected_without_leaking_credentials() -> None:
    with pytest.raises(ValueError, match=r"notifier 'chat': Apprise cannot use nope://\*\*\*@host"):
        Notify([Notifier("chat", ["nope://user:hunter22@host"])], Redactor())
