"""Schema drift: the response shape a check learns, and how its latest body differs. Pure.

A check learns from its first LEARNING_RUNS passing runs that carried a JSON body (see
monitor.core.jsonshape for what a shape is). After that, every 2xx JSON body is compared:
a learned field that is gone, or that has a type it never had, is drift (paged by the
`schema_drift` rule); a field the learned shape does not know is new (shown, not paged).
Accepting takes the last body's shape as the learned one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from checks.base import Result
from monitor.core.jsonshape import Field, Shape, fold, judged_absent, parent_of
from monitor.signals.status import ShapeField, ShapeStatus

LEARNING_RUNS = 3
# A notification or summary lists this many changes; the page and `intmon schema` list all.
SHOWN_CHANGES = 10
# What of an observation storage must keep: nothing, the observed shape, or the whole row.
Persist = Literal["observed", "learned"] | None


@dataclass(frozen=True)
class Drift:
    """How the latest body differs from the learned shape."""

    changes: tuple[str, ...] = ()  # `$.data.total: number → string`, `$.data.currency: removed`
    new: tuple[str, ...] = ()  # `$.data.tax: new (number)`

    @property
    def drifted(self) -> bool:
        return bool(self.changes)

    def summary(self) -> str:
        lines = [*self.changes, *self.new]
        shown = "; ".join(lines[:SHOWN_CHANGES])
        more = len(lines) - SHOWN_CHANGES
        return shown + (f"; and {more} more" if more > 0 else "")


def compare(learned: Shape, current: Shape) -> Drift:
    """Removed and retyped fields of `learned`, and the fields `current` adds."""
    was, now = learned.fields, current.fields
    changes = []
    for path, f in was.items():
        seen = now.get(path)
        if seen is not None and not seen.types <= f.types:
            changes.append(f"{path}: {f.shown()} → {seen.shown()}")
        # A truncated body may simply have stopped before the field.
        elif seen is None and not f.optional and not current.truncated and judged_absent(now, path):
            changes.append(f"{path}: removed")
    new = []
    if not learned.truncated:  # past the bound, every unlearned path would look new
        for path, f in now.items():
            parent = parent_of(path)
            # Only the top of a new subtree: its children are new by implication.
            if path not in was and (parent is None or parent in was):
                new.append(f"{path}: new ({f.shown()})")
    return Drift(tuple(changes), tuple(new))


def learn(learned: Shape | None, sample: Shape) -> Shape:
    if learned is None:
        return sample
    return Shape(fold(learned.fields, sample.fields), learned.truncated or sample.truncated)


def accept(learned: Shape | None, observed: Shape) -> Shape:
    """The observed shape becomes the learned one. What the learned shape knew to be optional
    stays optional, so the next body without such a field is not drift."""
    if learned is None:
        return observed
    fields = {
        p: Field(f.types, f.optional or (p in learned.fields and learned.fields[p].optional))
        for p, f in observed.fields.items()
    }
    for path, f in learned.fields.items():
        if f.optional and path not in fields:
            fields[path] = f
    return Shape(fields, observed.truncated)


class ShapeTracker:
    """One check's learned shape, its last observed one, and the drift between them."""

    def __init__(self) -> None:
        self.learned: Shape | None = None
        self.samples = 0  # bodies learned from, up to LEARNING_RUNS
        self.observed: Shape | None = None  # the last 2xx JSON body's
        self.observed_since: float | None = None  # when the body first had that shape
        self.accepted_at: float | None = None
        self.drift: Drift | None = None  # None until a body was compared with a learned shape

    @property
    def learning(self) -> bool:
        return self.samples < LEARNING_RUNS

    def observe(self, result: Result, now: float) -> Persist:
        """Take a sealed result in; say what of it storage must keep."""
        shape = result.shape
        if shape is None or result.status is None or not 200 <= result.status < 300:
            return None  # no JSON body: the drift (or its absence) stands as it was
        persist: Persist = None
        if shape != self.observed:
            self.observed, self.observed_since = shape, now
            persist = "observed"
        # Only healthy answers teach what healthy looks like.
        if self.learning and result.ok:
            self.learned = learn(self.learned, shape)
            self.samples += 1
            persist = "learned"
        if not self.learning and self.learned is not None:
            self.drift = compare(self.learned, shape)
        return persist

    def accept(self, now: float) -> bool:
        """The last observed shape becomes the learned one. False when none was observed."""
        if self.observed is None:
            return False
        learned = accept(self.learned, self.observed)
        self.restore(learned, LEARNING_RUNS, self.observed, self.observed_since, now)
        return True

    def restore(
        self,
        learned: Shape | None,
        samples: int,
        observed: Shape | None,
        observed_since: float | None,
        accepted_at: float | None,
    ) -> None:
        """Take what storage (or an accept) says; the drift follows from the two shapes."""
        self.learned, self.samples, self.accepted_at = learned, samples, accepted_at
        self.observed, self.observed_since = observed, observed_since
        self.drift = None
        if learned is not None and observed is not None and not self.learning:
            self.drift = compare(learned, observed)

    def status(self) -> ShapeStatus:
        drift = self.drift or Drift()
        learned = self.learned
        return ShapeStatus(
            state="learning" if self.learning else "drifted" if drift.drifted else "matching",
            learned_from=self.samples,
            fields=0 if learned is None else len(learned.fields),
            truncated=learned is not None and learned.truncated,
            changes=drift.changes,
            new_fields=drift.new,
            observed_since=self.observed_since,
            accepted_at=self.accepted_at,
        )

    def learned_fields(self) -> tuple[ShapeField, ...]:
        """The learned shape path by path, for the check's page."""
        if self.learned is None:
            return ()
        return tuple(
            ShapeField(path=p, types=f.shown(), optional=f.optional)
            for p, f in self.learned.fields.items()
        )
