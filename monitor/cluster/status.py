"""What `GET /api/cluster` answers: the replicas this one sees, and what each runs."""

from __future__ import annotations

from monitor.cluster.replica import Replica
from monitor.core.model import StatusModel


class ReplicaStatus(StatusModel):
    id: str
    """The replica's id (`monitor.replica.id`, by default host name and pid)."""
    host: str
    started_at: float
    """Unix seconds, on the replica's own clock."""
    lease_until: float | None
    """Unix seconds on the database's clock; null for a process alone on SQLite."""
    config_digest: str
    """Digest of the checks, rules and notifiers it was started with."""
    checks_owned: int
    """How many checks it runs (as it last reported; this replica's own is current)."""


class ClusterReport(StatusModel):
    generated_at: float
    clustered: bool
    """True on Postgres, where every `intmon run` on the database is a replica."""
    replica: str
    """The id of the replica that answered."""
    config_digest: str
    digests_agree: bool
    """False while replicas run with different configs: each divides the checks only with
    the replicas of its own config."""
    replicas: tuple[ReplicaStatus, ...]


def cluster_report(replica: Replica, now: float) -> ClusterReport:
    rows = [
        ReplicaStatus(
            id=row.id,
            host=row.host,
            started_at=row.started_at,
            lease_until=row.lease_until,
            config_digest=row.config_digest,
            checks_owned=len(replica.owned) if row.id == replica.id else row.checks_owned,
        )
        for row in replica.replicas
    ]
    if not replica.clustered:
        rows = [
            ReplicaStatus(
                id=replica.id,
                host=replica.host,
                started_at=replica.started_at,
                lease_until=None,
                config_digest=replica.digest,
                checks_owned=len(replica.checks),
            )
        ]
    return ClusterReport(
        generated_at=now,
        clustered=replica.clustered,
        replica=replica.id,
        config_digest=replica.digest,
        digests_agree=replica.digests_agree,
        replicas=tuple(rows),
    )
