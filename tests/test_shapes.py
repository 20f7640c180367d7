"""Response shapes and schema drift, pure: what a shape is, what learning keeps, what drifts."""

from __future__ import annotations

from typing import Any

import pytest

from checks.base import Result
from monitor.core.jsonshape import MAX_PATHS, Shape, shape_of
from monitor.core.redact import Redactor
from monitor.engine.runner import seal
from monitor.signals.shapes import LEARNING_RUNS, ShapeTracker, accept, compare, learn

ORDER = {"data": {"total": 12.5, "currency": "EUR", "items": [{"sku": "a", "qty": 1}]}}


def shown(shape: Shape) -> dict[str, str]:
    return {p: f.shown() + ("?" if f.optional else "") for p, f in shape.fields.items()}


def learned_from(*bodies: Any) -> Shape:
    learned = None
    for body in bodies:
        learned = learn(learned, shape_of(body))
    assert learned is not None
    return learned


def test_a_shape_has_paths_and_types_but_no_values() -> None:
    assert shown(shape_of(ORDER)) == {
        "$": "object",
        "$.data": "object",
        "$.data.total": "number",
        "$.data.currency": "string",
        "$.data.items": "array",
        "$.data.items[*]": "object",
        "$.data.items[*].sku": "string",
        "$.data.items[*].qty": "number",
    }


def test_lengths_and_values_of_arrays_never_change_a_shape() -> None:
    many = {
        "data": {
            "total": 3,
            "currency": "USD",
            "items": [{"sku": str(i), "qty": i} for i in range(50)],
        }
    }
    assert shape_of(many) == shape_of(ORDER)


def test_a_field_some_array_elements_lack_is_optional_not_missing() -> None:
    shape = shape_of({"items": [{"id": 1, "note": "x"}, {"id": 2}, {"id": 3, "note": None}]})
    assert shown(shape)["$.items[*].note"] == "string|null?"
    assert shown(shape)["$.items[*].id"] == "number"


def test_a_field_seen_as_null_and_as_string_is_a_nullable_string_not_drift() -> None:
    learned = learned_from({"note": None}, {"note": "x"}, {"note": None})
    assert shown(learned)["$.note"] == "string|null"
    assert not compare(learned, shape_of({"note": "y"})).drifted
    assert not compare(learned, shape_of({"note": None})).drifted


def test_a_removed_field_and_a_changed_type_are_drift_and_a_new_field_is_only_shown() -> None:
    learned = learned_from(ORDER, ORDER, ORDER)
    now = {"data": {"total": "12.50", "items": [], "tax": 2.1, "meta": {"a": 1, "b": 2}}}
    drift = compare(learned, shape_of(now))
    assert drift.changes == ("$.data.total: number → string", "$.data.currency: removed")
    # An empty list says nothing about its elements; a new subtree shows only its top.
    assert drift.new == ("$.data.tax: new (number)", "$.data.meta: new (object)")
    assert drift.summary().startswith("$.data.total: number → string; $.data.currency: removed")


def test_children_of_a_null_parent_are_not_reported_removed_only_the_parent() -> None:
    learned = learned_from(ORDER, ORDER, ORDER)
    drift = compare(learned, shape_of({"data": None}))
    assert drift.changes == ("$.data: object → null",)


def test_a_field_missing_from_one_learned_body_never_drifts_by_being_absent() -> None:
    with_coupon = {"total": 1, "coupon": "X"}
    learned = learned_from(with_coupon, {"total": 1}, with_coupon)
    assert not compare(learned, shape_of({"total": 2})).drifted


def test_accepting_takes_the_new_shape_and_keeps_what_was_optional() -> None:
    learned = learned_from({"total": 1, "coupon": "X"}, {"total": 1})
    taken = accept(learned, shape_of({"total": "1"}))
    assert shown(taken) == {"$": "object", "$.total": "string", "$.coupon": "string?"}
    assert not compare(taken, shape_of({"total": "2", "coupon": "Y"})).drifted


def test_a_shape_is_bounded_in_paths_and_depth_and_says_so() -> None:
    wide = shape_of({f"k{i}": i for i in range(MAX_PATHS * 2)})
    assert len(wide.fields) == MAX_PATHS and wide.truncated
    deep: Any = 1
    for _ in range(100):
        deep = {"a": deep}
    assert shape_of(deep).truncated
    small = shape_of(ORDER)
    assert not small.truncated
    # Past the bound, a path the body never reached is not "removed".
    learned = learned_from({"id": 1})
    crowded = shape_of({**{f"x{i}": i for i in range(MAX_PATHS)}, "id": 2})
    assert "$.id" not in crowded.fields and crowded.truncated
    assert not compare(learned, crowded).drifted


def test_odd_keys_are_quoted_and_a_shape_round_trips_through_storage() -> None:
    shape = shape_of({"a.b": {"it's": [1, "x"]}, "ok": True})
    assert "$['a.b']['it\\'s'][*]" in shape.fields
    assert shown(shape)["$['a.b']['it\\'s'][*]"] == "string|number"
    assert Shape.from_json(shape.to_json()) == shape


def test_a_secret_echoed_as_a_key_name_is_masked_by_the_runner() -> None:
    token = "tok-SECRET-1234"
    result = Result(ok=True, status=200, shape=shape_of({"sessions": {token: {"ok": True}}}))
    sealed = seal(result, 0.0, Redactor(), [token])
    assert sealed.shape is not None
    assert not any(token in path for path in sealed.shape.fields)
    assert list(sealed.shape.fields) == ["$", "$.sessions", "$.sessions.***", "$.sessions.***.ok"]


@pytest.mark.parametrize(
    ("status", "ok", "teaches"),
    [(200, True, True), (200, False, False), (500, False, False)],
    ids=["passing-2xx", "failing-2xx", "5xx"],
)
def test_only_passing_2xx_bodies_teach_the_shape(status: int, ok: bool, teaches: bool) -> None:
    tracker = ShapeTracker()
    tracker.observe(Result(ok=ok, status=status, shape=shape_of(ORDER)), 1.0)
    assert tracker.samples == (1 if teaches else 0)


def test_a_tracker_learns_then_reports_drift_until_accepted() -> None:
    tracker = ShapeTracker()
    for i in range(LEARNING_RUNS):
        assert tracker.observe(Result(ok=True, status=200, shape=shape_of(ORDER)), i) == "learned"
        assert tracker.drift is None or not tracker.drift.drifted
    assert tracker.status().state == "matching"
    assert tracker.observe(Result(ok=True, status=200, shape=shape_of(ORDER)), 9) is None
    drifted = shape_of({"data": {"total": "1", "items": []}})
    assert tracker.observe(Result(ok=False, status=200, shape=drifted), 10) == "observed"
    assert tracker.status().state == "drifted"
    # A timeout carries no body: it neither clears nor confirms the drift.
    tracker.observe(Result(ok=False, error_class="timeout"), 11)
    assert tracker.status().state == "drifted"
    assert tracker.accept(12)
    assert tracker.status().state == "matching" and tracker.status().accepted_at == 12
