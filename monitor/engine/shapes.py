"""Keeps each check's learned response shape: fed after every run, stored through the writer,
restored at start, and accepted from the API or from `intmon schema --accept`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from sqlalchemy.exc import SQLAlchemyError

from checks.base import Result
from monitor.core.clock import Clock
from monitor.core.jsonshape import Shape
from monitor.signals.shapes import Drift, ShapeTracker
from monitor.storage.shapes import (
    ShapeRow,
    load_shape,
    load_shapes,
    save_accepted,
    save_learning,
    save_observed,
)
from monitor.storage.store import Store
from monitor.storage.writer import DatabaseUnavailable, Writer

log = logging.getLogger(__name__)


def restore_tracker(tracker: ShapeTracker, row: ShapeRow) -> None:
    tracker.restore(
        None if row.learned is None else Shape.from_json(row.learned),
        row.samples,
        None if row.observed is None else Shape.from_json(row.observed),
        row.observed_since,
        row.accepted_at,
    )


def accept_now(tracker: ShapeTracker, now: float) -> tuple[str, int, float] | None:
    """Accept in memory; what `save_accepted` then stores (None: no body was observed)."""
    if not tracker.accept(now) or tracker.learned is None:
        return None
    return tracker.learned.to_json(), tracker.samples, now


class ShapeKeeper:
    def __init__(
        self, writer: Writer, store: Store, clock: Clock, on_error: Callable[[], None]
    ) -> None:
        self.writer = writer
        self.store = store
        self.clock = clock
        self.on_error = on_error

    def restore(self, trackers: Mapping[str, ShapeTracker]) -> None:
        """Blocking, at start-up (or for checks a reload adds)."""
        for name, row in load_shapes(self.store.engine, trackers.keys()).items():
            restore_tracker(trackers[name], row)

    async def observe(self, name: str, tracker: ShapeTracker, result: Result) -> None:
        """After a run. A check that drifts first looks for an accept `intmon schema` wrote
        from its own process: one key read, and only while there is something to accept."""
        if tracker.drift is not None and tracker.drift != Drift():
            await self._take_accept(name, tracker)
        persist = tracker.observe(result, self.clock.time())
        observed = tracker.observed
        if persist is None or observed is None:
            return
        if persist == "learned":
            row = ShapeRow(
                check=name,
                learned=None if tracker.learned is None else tracker.learned.to_json(),
                samples=tracker.samples,
                observed=observed.to_json(),
                observed_since=tracker.observed_since,
                accepted_at=tracker.accepted_at,
            )
            await self._write(name, save_learning, self.store.engine, row)
        else:
            since = tracker.observed_since or self.clock.time()
            await self._write(
                name, save_observed, self.store.engine, name, observed.to_json(), since
            )

    async def accept(self, name: str, tracker: ShapeTracker) -> bool:
        """The last observed shape becomes the learned one. False when none was observed."""
        accepted = accept_now(tracker, self.clock.time())
        if accepted is None:
            return False
        await self._write(name, save_accepted, self.store.engine, name, *accepted)
        return True

    async def _take_accept(self, name: str, tracker: ShapeTracker) -> None:
        try:
            row = await self.writer.read(load_shape, self.store.engine, name)
        except (DatabaseUnavailable, SQLAlchemyError):
            return  # the writer logs an outage once; the next run asks again
        if (
            row is not None
            and row.accepted_at is not None
            and row.accepted_at != tracker.accepted_at
        ):
            restore_tracker(tracker, row)
            log.info("check %s: response shape accepted; it is the learned one now", name)

    async def _write(self, name: str, fn: Callable[..., None], *args: object) -> None:
        try:
            await self.writer.submit(fn, *args)
        except DatabaseUnavailable:
            self.on_error()  # the writer logged the outage; the shape holds in memory
        except SQLAlchemyError as exc:
            log.warning("could not store the response shape of %s: %s", name, exc)
            self.on_error()
