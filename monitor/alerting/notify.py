"""Notifications through Apprise: routing, message text, grouping, and the (threaded) send.

Apprise is synchronous; every call runs on a small thread pool under a timeout, so a slow
notifier never holds up the event loop or the checks.

Every message carries a notification id, the same on every retry and re-send of it: in the
body, and as the field `notification_id` of what json://, form:// and xml:// receivers get.
Delivery is at-least-once (see outbox.py), so a receiver that keeps the ids it saw can drop
the repeats.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import apprise
from apprise import NotifyFormat

from monitor.alerting.machine import RANK, Intent, Kind
from monitor.alerting.media import medium, present
from monitor.config.alerting import AlertingSettings, quiet_plugin_loading
from monitor.config.rules import Severity
from monitor.core.errors import DeliveryError
from monitor.core.redact import Redactor
from monitor.core.timestamps import utc_text
from monitor.core.units import format_duration

log = logging.getLogger(__name__)
NOTIFY_TYPES = {"critical": "failure", "warning": "warning", "resolved": "success"}
_TYPE_RANK = {"success": 0, "info": 0, "warning": 1, "failure": 2}
ID_FIELD = "notification_id"
# Apprise's custom payload plugins add a field per `:name=value` URL parameter.
_PAYLOAD_SCHEMES = {"json", "jsons", "form", "forms", "xml", "xmls"}


def notification_id(dedup_keys: Iterable[str]) -> str:
    """Stable for the same outbox rows: a retry, or a re-send after a crash, has the same id."""
    digest = hashlib.sha256("\n".join(sorted(dedup_keys)).encode()).hexdigest()
    return f"intmon-{digest[:20]}"


def with_id(url: str, nid: str) -> str:
    """The notifier URL that also sends the id as a payload field, where Apprise can."""
    if url.split("://", 1)[0].lower() not in _PAYLOAD_SCHEMES:
        return url
    return f"{url}{'&' if '?' in url else '?'}:{ID_FIELD}={nid}"


class NotifierSettings(Protocol):
    """The shape of `notifiers[]` in the config (monitor.config.loader.NotifierConfig)."""

    @property
    def name(self) -> str: ...
    @property
    def urls(self) -> list[str]: ...
    @property
    def min_severity(self) -> Severity: ...
    @property
    def error_classes(self) -> tuple[str, ...] | None: ...


@dataclass(frozen=True)
class Message:
    """One notification for one notifier, ready for the outbox."""

    notifier: str
    check: str
    rule: str
    kind: str
    title: str
    body: str
    notify_type: str
    dedup_key: str
    created_at: float
    not_before: float  # later than created_at while it waits for its group
    expires_at: float
    group_key: str | None = None


def render(intent: Intent, link: str | None = None) -> tuple[str, str, str]:
    """(title, body, Apprise notify type) for one intent, as INTERFACE.md describes.

    The body is plain text, one fact a line (`Label: value`), which monitor.alerting.media
    turns into each medium's own line breaks. `link` is the check's page, when intmon knows
    its external URL."""
    where = f"{intent.check} {intent.rule}"
    if intent.kind is Kind.RESOLVED:
        title = f"RESOLVED: {where}"
        lines = [
            f"Resolved after {format_duration(intent.at - intent.since, coarse=True)} "
            f"(was {intent.severity}, firing since {utc_text(intent.since)}).",
            f"Now: {intent.summary}",
        ]
    else:
        note = {Kind.REMINDER: ", still", Kind.ESCALATED: ", escalated"}.get(intent.kind, "")
        title = f"FIRING: {where} ({intent.severity}{note})"
        lines = [intent.summary, f"Since: {utc_text(intent.since)} ({_ago(intent)})"]
        if intent.last_error:
            lines.append(f"Last error: {intent.last_error}")
        # The failure reason usually quotes the request id already; a second copy is noise.
        if intent.request_id and intent.request_id not in (intent.last_error or ""):
            lines.append(f"Request id: {intent.request_id}")
        if intent.migration_link:
            lines.append(f"Migration: {intent.migration_link}")
    if link:
        lines.append(f"Check page: {link}")
    kind = NOTIFY_TYPES["resolved" if intent.kind is Kind.RESOLVED else intent.severity]
    return title, "\n".join(lines), kind


def _ago(intent: Intent) -> str:
    """How long the condition has held: an alert that fires on the run that started it has
    held for no time at all, and "0ms ago" reads like a glitch."""
    held = intent.at - intent.since
    return "just now" if held < 1 else f"{format_duration(held, coarse=True)} ago"


def render_group(label: str, parts: Sequence[tuple[str, str, str]]) -> tuple[str, str, str]:
    """One message for several (title, body, type) of one group: a provider, or a check."""
    names = ", ".join(title.split(": ", 1)[-1] for title, _, _ in parts)
    state = "RESOLVED" if all(t.startswith("RESOLVED") for t, _, _ in parts) else "FIRING"
    title = f"{state}: {len(parts)} alerts for {label}: {names}"
    body = "\n\n".join(f"{t}\n{b}" for t, b, _ in parts)
    worst = max((kind for _, _, kind in parts), key=lambda kind: _TYPE_RANK.get(kind, 0))
    return title, body, worst


@dataclass(frozen=True)
class Queued:
    """What grouping needs to know of a pending outbox row."""

    id: int
    notifier: str
    group_key: str | None
    created_at: float
    due: bool


def group(rows: Iterable[Queued], group_wait: float) -> list[list[Queued]]:
    """Batches to send now. Rows of one (notifier, group) created within `group_wait` of the
    batch's first row go together; a batch is sent once any of its rows is due."""
    batches: list[list[Queued]] = []
    keyed: dict[tuple[str, str], list[Queued]] = {}
    for row in sorted(rows, key=lambda r: (r.created_at, r.id)):
        if row.group_key is None:
            if row.due:
                batches.append([row])
        else:
            keyed.setdefault((row.notifier, row.group_key), []).append(row)
    for members in keyed.values():
        batch: list[Queued] = []
        for row in members:
            if batch and row.created_at > batch[0].created_at + group_wait:
                batches.append(batch)
                batch = []
            batch.append(row)
        batches.append(batch)
    return [b for b in batches if any(r.due for r in b)]


class Notify:
    def __init__(
        self,
        notifiers: Iterable[NotifierSettings],
        redactor: Redactor,
        settings: AlertingSettings | None = None,
        on_result: Callable[[str, str], None] = lambda notifier, result: None,
        links: Callable[[str], str | None] = lambda check: None,
    ) -> None:
        self.settings = settings or AlertingSettings()
        self.links = links  # check name -> its page, for the message
        self.redact = redactor
        self.on_result = on_result  # (notifier, "success" | "failure") per attempt
        self.notifiers = {n.name: n for n in notifiers}
        for n in self.notifiers.values():
            self._build(n)  # a URL Apprise cannot use fails here, not at the first page
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="intmon-notify")
        # Apprise logs every attempt; a notifier that is down would log a line a retry. Its
        # lines of a send come back with the result (the reason of a DeliveryError), and the
        # outbox logs an outage once, so they stop here. (Its per-call capture handlers sit on
        # this logger and still see them; NullHandler keeps logging's last resort quiet.)
        apprise_log = logging.getLogger("apprise")
        apprise_log.propagate = False
        if not apprise_log.handlers:
            apprise_log.addHandler(logging.NullHandler())

    def _build(
        self, notifier: NotifierSettings, nid: str | None = None
    ) -> dict[NotifyFormat, apprise.Apprise]:
        """Apprise instances for one message, one per format its services are handed (see
        monitor.alerting.media): the id is a URL parameter, so new ones for every id."""
        instances: dict[NotifyFormat, apprise.Apprise] = {}
        bad = []
        with quiet_plugin_loading():
            for url in notifier.urls:
                service = apprise.Apprise.instantiate(with_id(url, nid) if nid else url)
                if service is None:
                    bad.append(self.redact(url))
                else:
                    instances.setdefault(medium(service, url), apprise.Apprise()).add(service)
        if bad:
            raise ValueError(f"notifier {notifier.name!r}: Apprise cannot use {', '.join(bad)}")
        return instances

    def route(self, intent: Intent, notify: Sequence[str]) -> list[str]:
        """The check's notifiers whose min_severity this intent's severity reaches, and whose
        error_classes, if any, hold the alert's cause (an alert without one reaches only the
        notifiers that take every class)."""
        return [name for name in notify if name in self.notifiers and self._takes(name, intent)]

    def _takes(self, name: str, intent: Intent) -> bool:
        notifier = self.notifiers[name]
        if RANK[intent.severity] < RANK[notifier.min_severity]:
            return False
        return notifier.error_classes is None or intent.cause in notifier.error_classes

    def messages(
        self, intents: Iterable[Intent], notify: Mapping[str, Sequence[str]]
    ) -> list[Message]:
        """Outbox rows for the intents that are to be sent; `notify` maps check -> notifiers."""
        out = []
        for intent in intents:
            if intent.silenced:
                continue
            title, body, kind = render(intent, self.links(intent.check))
            title, body = self.redact(title), self.redact(body)
            # The rules of one check firing together are one problem, and so are the checks
            # of one provider: one message lists them (see `group`).
            grouped = intent.kind is Kind.FIRING
            wait = self.settings.group_wait if grouped else 0.0
            for name in self.route(intent, notify.get(intent.check, ())):
                out.append(
                    Message(
                        notifier=name,
                        check=intent.check,
                        rule=intent.rule,
                        kind=str(intent.kind),
                        title=title,
                        body=body,
                        notify_type=kind,
                        dedup_key=f"{intent.dedup_key}/{name}",
                        created_at=intent.at,
                        not_before=intent.at + wait,
                        expires_at=intent.at + self.settings.expire_after,
                        group_key=(intent.provider or intent.check) if grouped else None,
                    )
                )
        return out

    async def send(
        self, notifier: str, title: str, body: str, notify_type: str, *, nid: str
    ) -> None:
        """Deliver through every URL of the notifier, with notification id `nid` in the body
        and payload; DeliveryError unless Apprise says yes for all of them."""
        settings = self.notifiers.get(notifier)
        if settings is None:
            raise DeliveryError(f"no notifier named {notifier!r}", permanent=True)
        instances = self._build(settings, nid)
        text = f"{body}\n\nNotification id: {nid}"
        reasons: list[str] = []

        def call() -> bool:
            delivered = True
            for form, instance in instances.items():
                result = instance.notify(
                    title=title,
                    body=present(text, form),
                    notify_type=notify_type,
                    body_format=form,  # what the body is in, so Apprise converts nothing
                )
                # Apprise 2.3+ returns what it logged on the way (older: a plain bool).
                entries = getattr(result, "logs", lambda: ())()
                reasons.extend(e.message for e in entries if e.level in ("WARNING", "ERROR"))
                delivered = bool(result) and delivered
            return delivered

        loop = asyncio.get_running_loop()
        try:
            ok = await asyncio.wait_for(
                loop.run_in_executor(self._pool, call), self.settings.send_timeout
            )
        except TimeoutError:
            # The thread cannot be killed and may still deliver; counting it failed risks one
            # duplicate (with the same id), which beats a stuck outbox.
            reasons.append(f"no answer within {format_duration(self.settings.send_timeout)}")
            ok = False
        self.on_result(notifier, "success" if ok else "failure")
        if not ok:
            why = self.redact(reasons[-1]) if reasons else "Apprise reported a failed delivery"
            raise DeliveryError(why)  # the caller knows which notifier it asked

    async def test(self, notifier: str) -> bool:
        """For `intmon notify-test`: one direct message, not through the outbox."""
        try:
            await self.send(
                notifier,
                "intmon test notification",
                f"If you read this, notifier {notifier!r} works.",
                "info",
                nid=f"intmon-test-{uuid.uuid4().hex[:12]}",
            )
        except DeliveryError as exc:
            # Apprise's own lines stay quiet (see __init__): the reason is said here.
            log.warning("test notification to %s failed: %s", notifier, exc)
            return False
        return True

    def close(self, cancel_pending: bool = True) -> None:
        self._pool.shutdown(wait=False, cancel_futures=cancel_pending)
