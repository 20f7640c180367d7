"""What a config reload changes. Pure: the daemon applies the plan (Daemon.apply)."""

from __future__ import annotations

from dataclasses import dataclass, field

from monitor.config.settings import Config

# Settings the running process cannot take over without a restart (sockets, pools, the file).
RESTART_ONLY = (
    "database",
    "listen",
    "concurrency",
    "per_host_concurrency",
    "replica",
    "event_loop",
)


@dataclass
class ReloadPlan:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    rescheduled: list[str] = field(default_factory=list)  # changed interval: new grid slot
    needs_restart: list[str] = field(default_factory=list)  # monitor.* keys left as they were

    def summary(self) -> str:
        parts = [
            f"{label} {', '.join(names)}"
            for label, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
            )
            if names
        ]
        text = "; ".join(parts) or "no check changed"
        if self.needs_restart:
            text += f" (monitor.{', monitor.'.join(self.needs_restart)} need a restart)"
        return text

    def as_json(self) -> dict[str, list[str]]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "needs_restart": self.needs_restart,
        }


def plan(old: Config, new: Config) -> ReloadPlan:
    before = {c.name: c for c in old.checks}
    after = {c.name: c for c in new.checks}
    result = ReloadPlan(
        added=[name for name in after if name not in before],
        removed=[name for name in before if name not in after],
    )
    for name, check in after.items():
        previous = before.get(name)
        if previous is None:
            continue
        if previous != check or old.rules.get(name) != new.rules.get(name):
            result.changed.append(name)
            if previous.interval != check.interval:
                result.rescheduled.append(name)
    result.needs_restart = [
        key for key in RESTART_ONLY if getattr(old.monitor, key) != getattr(new.monitor, key)
    ]
    return result
