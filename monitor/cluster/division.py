"""Which replica runs which check: rendezvous (highest random weight) hashing. Pure.

Every replica computes the same answer from the same live set, with no coordination: each
check goes to the replica with the highest weight for (replica, check). When a replica joins or
leaves, only the checks whose highest weight changes move, about 1/N of them, so a restart
does not reshuffle everything. The division is an economy, not the guarantee: a check two
replicas both believe they own is still run once per slot, by whoever claims the slot.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from monitor.config.settings import Config


def weight(replica: str, check: str) -> int:
    digest = hashlib.blake2b(f"{replica}\0{check}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(check: str, replicas: Iterable[str]) -> str | None:
    """The replica that runs `check`; None without replicas. Ties (astronomically rare) go to
    the greater id, so every replica still agrees."""
    return max(replicas, key=lambda replica: (weight(replica, check), replica), default=None)


# Not a check: no check name holds parentheses (monitor.core.model.NAME_PATTERN).
MAINTENANCE = "(maintenance)"


def leader(replicas: Iterable[str]) -> str | None:
    """The replica that does the cluster-wide maintenance (rollups, retention, pruning of slot
    claims) when `replicas` are the live ones: the one that would run a pseudo-check, so every
    replica agrees without a word, as for checks, and a join moves it one time in N.

    Elected among every live replica, whatever its config digest: there is one database to
    maintain, and a rolling config change (two digests) must not make two leaders.
    """
    return owner(MAINTENANCE, replicas)


def owned_by(me: str, checks: Iterable[str], replicas: Iterable[str]) -> frozenset[str]:
    """The checks `me` runs when `replicas` (which need not list `me`) are the live ones."""
    peers = sorted({*replicas, me})
    return frozenset(check for check in checks if owner(check, peers) == me)


def config_digest(config: Config) -> str:
    """What replicas must agree on to divide the work: the checks, their rules and the
    notifiers. Not `monitor:` (each replica has its own id, listen address, log level)."""
    document = {
        "checks": [check.model_dump(mode="json") for check in config.checks],
        "rules": {
            check: {name: rule.model_dump(mode="json") for name, rule in rules.items()}
            for check, rules in config.rules.items()
        },
        "notifiers": [notifier.model_dump(mode="json") for notifier in config.notifiers],
        "alerting": config.alerting.model_dump(mode="json"),
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
