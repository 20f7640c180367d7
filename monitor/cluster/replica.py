"""This process as one replica: its lease, its share of the checks, and slot claims.

On Postgres every `intmon run` on the same database is a replica. Each renews its lease every
third of it; the live set is the rows whose lease (on the database's clock) has not run out,
and each replica runs the checks rendezvous hashing gives it among the live replicas with its
config digest (monitor.cluster.division). Before a run, the owner claims the (check, slot):
of replicas that disagree for a moment about the live set, exactly one runs the slot.

Joins and leaves are also heard at once: on Postgres each replica LISTENs (storage.listener)
for what a joining or leaving replica NOTIFYs with its row change (cluster.leases), and then
renews straight away, which re-reads the live set and re-divides. A burst of news makes one
renewal (plus one after it for news that came in while it ran), not one per message.

A replica whose lease runs out on its own clock (measured from before the renewal it last got
through) while the database answers stops running checks: by then the others may have taken
them. One whose renewals fail because the database is out of reach keeps running the checks it
had for `outage_hold` from that renewal, retrying every second, and its results wait in the
writer: when the database is down for everyone, every replica goes on with its own share and
nothing is lost. Were it cut off alone, the others take its checks over after its lease, and
for the rest of the hold a slot may be requested twice; it is still stored once (the runs'
unique (check, slot) key) and alert transitions, compare-and-set in the database, page once.
The first renewal after an outage keeps the share it had: the others are back within a
second, and re-dividing with the ones that happened to renew first would move checks away
and back. On SQLite there is one process: it owns everything and claims nothing.

Leases are real time, not the injected Clock: they are a contract with the database's clock,
which no test's fake clock moves. So renewals wait with asyncio and validity is measured on
`monotonic` (time.monotonic unless a test passes its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable

from sqlalchemy.exc import SQLAlchemyError

from monitor.cluster import leases
from monitor.cluster.division import leader, owned_by
from monitor.cluster.leases import ReplicaRow
from monitor.config.settings import ReplicaSettings
from monitor.core.clock import Clock
from monitor.metrics import Metrics
from monitor.storage.listener import Listener
from monitor.storage.writer import DatabaseUnavailable, Writer

log = logging.getLogger(__name__)
CLAIM_RETENTION = 3600.0  # seconds of slot claims kept; a slot is decided within a second
PRUNE_EVERY = 60.0
OUTAGE_RETRY = 1.0  # seconds between renewals while the database is out of reach (at most)
# How long a leave waits for a renewal under way: milliseconds normally; longer, the database
# hangs, and the stop goes on (the renewal may then outlive the row: its lease runs out).
LEAVE_WAIT = 5.0


def default_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[-63:]


class Replica:
    def __init__(
        self,
        settings: ReplicaSettings,
        writer: Writer,
        clock: Clock,
        metrics: Metrics,
        *,
        clustered: bool,
        digest: str,
        checks: Iterable[str],
        on_gain: Callable[[set[str]], Awaitable[None]],
        on_share: Callable[[frozenset[str]], None] = lambda share: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = settings.id or default_id()
        self.host = socket.gethostname()
        self.lease = settings.lease
        self.hold = max(settings.lease, settings.outage_hold)
        self.writer = writer
        self.engine = writer.store.engine
        self.clock = clock
        self.monotonic = monotonic
        self.metrics = metrics
        self.clustered = clustered
        self.digest = digest
        self.checks = set(checks)
        self.on_gain = on_gain  # before this replica runs checks it did not run until now
        self.on_share = on_share  # after each division, with the checks this replica runs
        self.started_at = clock.time()
        self.replicas: tuple[ReplicaRow, ...] = ()  # as of the last renewal
        self.db_now = 0.0  # the database's clock at the last renewal
        self.owned: frozenset[str] = frozenset()
        self.reachable = True  # the last renewal got through
        self._renewed_at = -math.inf  # monotonic() before the last renewal that got through
        self._settling = False  # the next renewal is the first after an outage
        self._settled = False  # that renewal was just made: the next look waits for the others
        self._leads_from = math.inf  # monotonic() from which it does the maintenance, see leads
        metrics.cluster_leader.set(int(not clustered))
        self._pruned_at = -math.inf
        self._stopping = asyncio.Event()
        # Claims wait here while one batch is in flight, and go together in the next: a
        # claim costs one round trip to the database at most after the one under way.
        self._claims: list[tuple[str, int, asyncio.Future[bool]]] = []
        self._claiming: asyncio.Task[None] | None = None
        # Set by `renew_soon`: the next renewal is due now, not at the next look.
        self._news: set[str] = set()
        self._poked = asyncio.Event()
        self._listening: asyncio.Task[None] | None = None
        self._renewing = asyncio.Lock()  # a renewal under way; `leave` waits for it
        self.listener = (
            Listener(
                self.engine,
                leases.CHANNEL,
                clock,
                on_message=self._heard,
                on_listening=lambda: self.renew_soon("listening"),
                check_every=self.lease,
            )
            if clustered
            else None
        )

    def owns(self, check: str) -> bool:
        return not self.clustered or check in self.owned

    def may_run(self) -> bool:
        """False once the lease has run out without a renewal, better a missed slot than two;
        unless the database is out of reach, then only after `outage_hold` (module doc)."""
        if not self.clustered:
            return True
        held = self.monotonic() - self._renewed_at
        return held < self.lease or (not self.reachable and held < self.hold)

    def leads(self) -> bool:
        """Whether this replica does the cluster-wide maintenance now (monitor.storage.upkeep).

        Alone (SQLite): always. Else while the live replicas elect it (division.leader) and
        its lease holds (the lease itself, not `outage_hold`: the others elect another leader
        once it runs out), from one lease after its election: by then the replica that led
        before has renewed (every third of a lease) and seen it, or has lost its own lease,
        so two replicas never maintain at once. A leader that leaves or dies is followed
        within two leases: its row goes or runs out, then one lease.
        """
        if not self.clustered:
            return True
        now = self.monotonic()
        held = now - self._renewed_at < self.lease
        return not self._stopping.is_set() and held and now >= self._leads_from

    @property
    def digests_agree(self) -> bool:
        return all(row.config_digest == self.digest for row in self.replicas)

    @property
    def ready(self) -> bool:
        return not self.clustered or (self.reachable and self.may_run())

    async def reconfigure(self, checks: Iterable[str], digest: str) -> None:
        """After a reload: divide the new checks among the replicas known now (the next
        renewal reports the new digest to the others)."""
        self.checks, self.digest = set(checks), digest
        if self.clustered:
            await self._divide(adopt=True)

    async def join(self) -> None:
        """The first renewal, before scheduling starts: the share is known from the first slot.
        Everything was just restored from the database, so nothing is adopted."""
        if self.clustered:
            await self._renew(adopt=False)

    def renew_soon(self, why: str) -> None:
        """Renew now rather than at the next look (a replica joined or left); calls before
        that renewal starts make one renewal."""
        self._news.add(why)
        self._poked.set()

    def _heard(self, replica: str) -> None:
        if replica != self.id:  # this replica's own join: nothing to re-read
            self.renew_soon(replica)

    async def run(self) -> None:
        if self.listener is not None and self._listening is None:
            self._listening = asyncio.create_task(self.listener.run(), name="intmon-listener")
        while self.clustered and not self._stopping.is_set():
            # After an outage the others come back one by one, each announcing it: what is
            # heard waits for the settling look, which divides with them all (module doc).
            heeding = not self._settled
            sleeper = asyncio.ensure_future(asyncio.sleep(self._next_look()))
            stopper = asyncio.ensure_future(self._stopping.wait())
            waits = {sleeper, stopper}
            if heeding:
                waits.add(asyncio.ensure_future(self._poked.wait()))
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
            if self._stopping.is_set():
                return
            self._take_news()
            try:
                await self._renew(adopt=True)
            except DatabaseUnavailable:
                self._lost()  # the writer logs the outage once
            except SQLAlchemyError as exc:
                self._lost()
                log.warning("replica %s could not renew its lease: %s", self.id, exc)
            if self.reachable and self.leads() and self.monotonic() - self._pruned_at > PRUNE_EVERY:
                await self._prune()

    def _lost(self) -> None:
        if self.reachable and self.may_run() and self.hold > self.lease:
            log.warning(
                "replica %s cannot reach the database: it keeps running its %d checks for up to "
                "%.0fs, their results waiting in memory", self.id, len(self.owned), self.hold,
            )  # fmt: skip
        self.reachable = False
        self._settling = True

    def _take_news(self) -> None:
        """Before a renewal: what is heard from now on needs a renewal after this one."""
        if self._poked.is_set():
            log.debug("replica %s renews at once: %s", self.id, ", ".join(sorted(self._news)))
            self._poked.clear()
            self._news.clear()

    def _next_look(self) -> float:
        """A third of the lease, or sooner: just after the first peer's lease runs out. A live
        peer renews long before; a dead one's checks are then taken over one lease after its
        last renewal, not up to a third of a lease later. Every second at most while the
        database is out of reach, so the replicas are all back soon after it is."""
        retry = min(self.lease / 3, OUTAGE_RETRY)
        if not self.reachable:
            return retry
        if self._settled:
            # Twice the others' retry: each of them has renewed once more since the database
            # was back when this one did, so the next division counts them all.
            self._settled = False
            return max(self.lease / 3, 2 * retry)
        peers = [r.lease_until for r in self.replicas if r.id != self.id]
        first_expiry = min(peers, default=math.inf) - self.db_now + 0.01
        return max(min(self.lease / 3, first_expiry), 0.01)

    async def _renew(self, adopt: bool) -> None:
        async with self._renewing:
            # Once leaving, no renewal: after the leave's delete it would put the row back,
            # and the others would wait a whole lease for a replica that is gone.
            if not self._stopping.is_set():
                await self._renew_now(adopt)

    async def _renew_now(self, adopt: bool) -> None:
        sent = self.monotonic()
        row = ReplicaRow(
            id=self.id,
            host=self.host,
            pid=os.getpid(),
            started_at=self.started_at,
            lease_until=0.0,
            config_digest=self.digest,
            checks_owned=len(self.owned),
        )
        # A thread of its own, not the writer's: a renewal must not queue behind a batch.
        # Concurrent writers are fine on Postgres, the only database replicas share.
        self.db_now, live = await self.writer.read(leases.renew, self.engine, row, self.lease)
        self._renewed_at = sent
        self.reachable = True
        self.replicas = tuple(live)
        self._elect()
        if self._settling:
            # The first renewal after an outage: the others come back within OUTAGE_RETRY, and
            # the settling look (_next_look) divides with them all.
            self._settling, self._settled = False, True
            self._count()
            return
        await self._divide(adopt)

    def _elect(self) -> None:
        elected = leader(r.id for r in self.replicas) == self.id
        if elected and self._leads_from == math.inf:
            self._leads_from = self.monotonic() + self.lease
            log.info("replica %s leads the maintenance from one lease on", self.id)
        elif not elected and self._leads_from != math.inf:
            self._leads_from = math.inf
            log.info("replica %s hands the maintenance over", self.id)
        self.metrics.cluster_leader.set(int(self.leads()))

    def _count(self) -> None:
        self.metrics.cluster_replicas.set(len(self.replicas))
        self.metrics.cluster_config_mismatch.set(int(not self.digests_agree))

    async def _divide(self, adopt: bool) -> None:
        self._count()
        peers = [r.id for r in self.replicas if r.config_digest == self.digest]
        share = owned_by(self.id, self.checks, peers)
        gained = set(share - self.owned)
        if share != self.owned:
            log.info(
                "replica %s runs %d of %d checks (%d replicas with this config)",
                self.id, len(share), len(self.checks), len({*peers, self.id}),
            )  # fmt: skip
        self.owned = self.owned & share  # what moved away stops at once
        if gained and adopt:
            # Windows and alert states first, so the first run here judges what the last
            # owner saw instead of paging afresh.
            await self.on_gain(gained)
        self.owned = share
        self.on_share(share)

    async def claim(self, check: str, due: float) -> tuple[bool, int | None]:
        """(run it, slot to store it under) for `check`'s slot due at `due`."""
        if not self.clustered:
            return True, None
        if check not in self.owned or not self.may_run():
            return False, None
        slot = round(due * 1000)
        if not self.reachable:
            # The renewals, every second, find out when the database is back; a claim per
            # run meanwhile would only knock on it (and fail) more often.
            return True, slot
        won: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._claims.append((check, slot, won))
        if self._claiming is None or self._claiming.done():
            self._claiming = asyncio.create_task(self._send_claims(), name="intmon-claims")
        try:
            return await won, slot
        except DatabaseUnavailable:
            # Run anyway if the check is still ours (the claim may have waited while the
            # division changed) and the lease or the outage hold allows: the others agree the
            # check is ours, and the runs' unique key stores the slot once should one disagree.
            return check in self.owned and self.may_run(), slot

    async def _send_claims(self) -> None:
        while self._claims:
            batch, self._claims = self._claims, []
            slots = [(check, slot) for check, slot, _ in batch]
            try:
                won = await self.writer.read(leases.claim, self.engine, slots, self.id)
            except Exception as exc:  # each claimer decides what the failure means for it
                for *_, future in batch:
                    future.set_exception(exc)
                continue
            for check, slot, future in batch:
                future.set_result((check, slot) in won)

    async def _prune(self) -> None:
        self._pruned_at = self.monotonic()
        before = round((self.db_now - CLAIM_RETENTION) * 1000)
        try:
            await self.writer.read(leases.prune_claims, self.engine, before)
        except (DatabaseUnavailable, SQLAlchemyError) as exc:
            log.debug("slot claims not pruned, next time then: %s", exc)

    async def leave(self) -> None:
        """A graceful stop: stop claiming and drop the row, so the others divide at once."""
        self._stopping.set()
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening
        if not self.clustered:
            return
        self.owned = frozenset()
        # A renewal under way ends first, so the delete is the last word; none starts after.
        waited: bool = False
        try:
            waited = await asyncio.wait_for(self._renewing.acquire(), LEAVE_WAIT)
        except TimeoutError:
            log.warning(
                "replica %s leaves while a renewal waits for the database: should it get "
                "through, the others take over when its lease runs out", self.id,
            )  # fmt: skip
        try:
            self.owned = frozenset()  # what that renewal divided
            await self.writer.read(leases.leave, self.engine, self.id)
        except (DatabaseUnavailable, SQLAlchemyError) as exc:
            log.warning("replica %s left without removing its row (its lease runs out): %s",
                        self.id, exc)  # fmt: skip
        finally:
            if waited:
                self._renewing.release()
