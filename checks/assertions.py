"""`expect:` rules and their evaluation against a response. Pure: no I/O."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonpath
from pydantic import Field, field_validator, model_validator

from checks.json_schema import SchemaField
from monitor.core.model import Model
from monitor.core.units import Duration, brief, format_duration

_OPERATORS = {"exists", "eq", "ne", "gt", "gte", "lt", "lte", "regex", "contains", "in"}
_STATUS_CLASS = re.compile(r"^[1-5]xx$")


def compile_path(path: str) -> jsonpath.JSONPath | jsonpath.CompoundJSONPath:
    try:
        return jsonpath.compile(path)
    except jsonpath.JSONPathError as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path!r} is not a valid JSONPath: {detail}") from None


def normalize_status(value: Any) -> tuple[int | str, ...]:
    items = value if isinstance(value, list) else [value]
    out: list[int | str] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
            out.append(item)
        elif isinstance(item, str) and item.isdigit() and 100 <= int(item) <= 599:
            out.append(int(item))
        elif isinstance(item, str) and _STATUS_CLASS.match(item.lower()):
            out.append(item.lower())
        else:
            raise ValueError(
                f"{brief(item)} is not a status code, a list of them, or a class like 2xx"
            )
    return tuple(out)


def status_matches(expected: tuple[int | str, ...], status: int) -> bool:
    return any(status == e if isinstance(e, int) else str(status)[0] == e[0] for e in expected)


class Expect(Model):
    """What a healthy response looks like."""

    status: tuple[int | str, ...] = ("2xx",)
    # JSONPath -> expected value, or an operator mapping like {gt: 0} / {exists: false}.
    json_: dict[str, Any] = Field(default_factory=dict, alias="json")
    body_contains: list[str] = Field(default_factory=list)
    body_not_contains: list[str] = Field(default_factory=list)
    body_regex: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)  # header name -> regex on its value
    max_latency: Duration | None = None
    # Slower than this, a passing run shows the check as `degraded`; the run still passes.
    degraded_latency: Duration | None = None
    # Fail 2xx responses whose JSON reports an error (GraphQL errors, "ok": false, ...).
    body_errors: bool = True
    # Extra JSONPaths that mark an error when they match a truthy value.
    error_paths: list[str] = Field(default_factory=list)
    # A JSON Schema the whole body must satisfy: inline, or {file: path} (checks/json_schema.py).
    json_schema: SchemaField | None = None

    @model_validator(mode="after")
    def _degraded_below_max(self) -> Expect:
        slow, limit = self.degraded_latency, self.max_latency
        if slow is not None and limit is not None and slow >= limit:
            raise ValueError(
                f"degraded_latency ({format_duration(slow)}) must be below max_latency "
                f"({format_duration(limit)}): past max_latency the run fails"
            )
        return self

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> tuple[int | str, ...]:
        return normalize_status(value)

    @field_validator("body_contains", "body_not_contains", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("json_")
    @classmethod
    def _json_rules(cls, value: dict[str, Any]) -> dict[str, Any]:
        for path, expected in value.items():
            compile_path(path)
            if _is_operator(expected):
                unknown = set(expected) - _OPERATORS
                if unknown:
                    raise ValueError(f"{path}: unknown operator(s) {sorted(unknown)}")
                if "regex" in expected:
                    _compile_regex(expected["regex"])
        return value

    @field_validator("error_paths")
    @classmethod
    def _error_path_syntax(cls, value: list[str]) -> list[str]:
        for path in value:
            compile_path(path)
        return value

    @field_validator("body_regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            _compile_regex(value)
        return value

    # Compiled once, on first use; cached properties read like plain attributes afterwards.
    @functools.cached_property
    def compiled_paths(self) -> dict[str, jsonpath.JSONPath | jsonpath.CompoundJSONPath]:
        return {path: compile_path(path) for path in self.json_}

    @functools.cached_property
    def compiled_error_paths(
        self,
    ) -> list[tuple[str, jsonpath.JSONPath | jsonpath.CompoundJSONPath]]:
        return [(path, compile_path(path)) for path in self.error_paths]

    @property
    def needs_body(self) -> bool:
        return (
            bool(self.json_ or self.body_contains or self.body_not_contains or self.body_regex)
            or self.json_schema is not None
            or self.body_errors
            or bool(self.error_paths)
        )


def _is_operator(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(k in _OPERATORS for k in value)


def _compile_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None


@dataclass
class Failure:
    error_class: str
    reason: str


def check_status(expect: Expect, status: int) -> Failure | None:
    if status_matches(expect.status, status):
        return None
    wanted = ", ".join(map(str, expect.status))
    if status == 429:
        return Failure("rate_limited", f"HTTP 429 (expected {wanted})")
    if 400 <= status < 500:
        return Failure("http_4xx", f"HTTP {status} (expected {wanted})")
    if status >= 500:
        return Failure("http_5xx", f"HTTP {status} (expected {wanted})")
    return Failure("assertion", f"HTTP {status} (expected {wanted})")


def check_response(
    expect: Expect,
    *,
    status: int,
    headers: Any,
    body: bytes,
    truncated: bool,
    latency: float,
    cap: int,
    parsed: Callable[[Any], None] = lambda document: None,
) -> Failure | None:
    """Every `expect` rule, in the order a person debugging would want them reported.

    `parsed` gets the body's JSON document once it is parsed, so callers need not parse it
    again (the shape for schema drift)."""
    failure = check_status(expect, status)
    if failure:
        return failure
    for name, pattern in expect.headers.items():
        value = headers.get(name)
        if value is None:
            return Failure("assertion", f"header {name} is missing")
        if not re.search(pattern, value):
            return Failure("assertion", f"header {name} is {value[:80]!r}, expected /{pattern}/")
    if expect.max_latency is not None and latency > expect.max_latency:
        return Failure(
            "assertion",
            f"latency {format_duration(latency)} over max_latency "
            f"{format_duration(expect.max_latency)}",
        )
    if not expect.needs_body:
        return None
    if truncated:
        return Failure("invalid_response", f"body larger than the {cap} byte cap")
    parses_json = bool(expect.json_ or expect.error_paths or expect.json_schema is not None)
    text, undecodable = decode_body(body, headers.get("Content-Type", ""), parses_json=parses_json)
    if undecodable:
        return Failure("invalid_response", undecodable)
    document, parse_error = _parse_json(text) if _looks_like_json(text) else (None, "not JSON")
    if parse_error is None:
        parsed(document)
    if 200 <= status < 300 and document is not None:
        failure = find_body_error(expect, document)
        if failure:
            return failure
    if (expect.json_ or expect.json_schema is not None) and parse_error is not None:
        return Failure("invalid_response", f"body is not JSON: {parse_error}")
    if expect.json_schema is not None:
        violation = expect.json_schema.violation(document)
        if violation:
            return Failure("assertion", violation)
    if expect.json_:
        failure = _check_json(expect, document)
        if failure:
            return failure
    return _check_text(expect, text)


def decode_body(body: bytes, content_type: str, *, parses_json: bool) -> tuple[str, str | None]:
    """The body as text, and why not when it claims to be text but does not decode.

    A body claims a charset through Content-Type, and JSON is UTF-8 (RFC 8259) whether it is
    labelled JSON or a JSON rule reads it. A body that claims nothing (an image, a download) is
    read leniently: `body_errors` then finds no JSON in it, and the check passes.
    """
    charset = _declared_charset(content_type) or ("utf-8" if parses_json else None)
    if charset is None:
        return body.decode("utf-8", errors="replace"), None
    try:
        return body.decode(charset), None
    except LookupError:  # a charset Python does not know: judge it as the usual UTF-8
        return decode_body(body, "", parses_json=True)
    except UnicodeDecodeError as exc:
        byte = body[exc.start : exc.start + 1].hex()
        return "", f"body is not valid {charset}: byte 0x{byte} at offset {exc.start}"


def _declared_charset(content_type: str) -> str | None:
    _, *params = content_type.split(";")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip(' "'):
            return value.strip(' "').lower()
    return "utf-8" if is_json_type(content_type) else None


def is_json_type(content_type: str) -> bool:
    """`application/json` or a `+json` type (`application/problem+json`, ...)."""
    mime = content_type.partition(";")[0].strip().lower()
    return mime == "application/json" or mime.endswith("+json")


def _looks_like_json(text: str) -> bool:
    return text.lstrip()[:1] in ("{", "[", '"') or text.strip() in ("true", "false", "null")


def _parse_json(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text), None
    except ValueError as exc:
        return None, str(exc)


def _check_json(expect: Expect, document: Any) -> Failure | None:
    for path, expected in expect.json_.items():
        values = expect.compiled_paths[path].findall(document)
        if _is_operator(expected):
            message = _apply_operators(path, values, expected)
        elif not values:
            message = f"{path} not found"
        else:
            bad = [v for v in values if not _equal(v, expected)]
            message = f"{path} is {_show(bad[0])}, expected {_show(expected)}" if bad else None
        if message:
            return Failure("assertion", message)
    return None


def _apply_operators(path: str, values: list[Any], ops: dict[str, Any]) -> str | None:
    if "exists" in ops:
        if bool(values) != bool(ops["exists"]):
            return f"{path} {'not found' if ops['exists'] else 'exists'}"
        if not values:
            return None
    if not values:
        return f"{path} not found"
    for value in values:
        for op, operand in ops.items():
            if op != "exists" and not _holds(op, value, operand):
                return f"{path} is {_show(value)}, expected {op} {_show(operand)}"
    return None


def _holds(op: str, value: Any, operand: Any) -> bool:
    try:
        if op == "eq":
            return _equal(value, operand)
        if op == "ne":
            return not _equal(value, operand)
        if op == "in":
            return any(_equal(value, o) for o in operand)
        if op == "contains":
            return operand in value
        if op == "regex":
            return re.search(operand, str(value)) is not None
        comparisons = {"gt": value > operand, "gte": value >= operand}
        comparisons |= {"lt": value < operand, "lte": value <= operand}
        return bool(comparisons[op])
    except TypeError:
        return False  # comparing a string with a number: the expectation does not hold


def _equal(value: Any, expected: Any) -> bool:
    if isinstance(value, bool) or isinstance(expected, bool):
        return value is expected
    return bool(value == expected)


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_text(expect: Expect, text: str) -> Failure | None:
    for needle in expect.body_contains:
        if needle not in text:
            return Failure("assertion", f"body does not contain {needle!r}")
    for needle in expect.body_not_contains:
        if needle in text:
            return Failure("assertion", f"body contains {needle!r}")
    if expect.body_regex and not re.search(expect.body_regex, text):
        return Failure("assertion", f"body does not match /{expect.body_regex}/")
    return None


def find_body_error(expect: Expect, document: Any) -> Failure | None:
    """Errors that APIs report inside an HTTP 2xx: the check passes a plain ping, not this."""
    for path, compiled in expect.compiled_error_paths:
        hits = [v for v in compiled.findall(document) if v not in (None, False, "", [], {})]
        if hits:
            return Failure("body_error", f"{path}: {_error_text(hits[0])}")
    if not expect.body_errors or not isinstance(document, dict):
        return None
    errors = document.get("errors")
    if isinstance(errors, list) and errors:
        return Failure("body_error", f"errors: {_error_text(errors[0])}")
    if document.get("ok") is False:
        return Failure("body_error", f"ok: false: {_error_text(document)}")
    if document.get("status") == "0" and ("message" in document or "result" in document):
        # Etherscan-style: "message" is a code word (NOTOK), "result" says what went wrong.
        parts = [document.get(k) for k in ("message", "result")]
        text = ": ".join(p[:200] for p in parts if isinstance(p, str) and p)
        return Failure("body_error", f'status "0": {text or _show(document)}')
    error = document.get("error")
    if (isinstance(error, dict) and error) or (isinstance(error, str) and error.strip()):
        return Failure("body_error", f"error: {_error_text(error)}")
    return None


_ENVELOPE_ID_KEYS = ("request_id", "requestId", "request-id")


def envelope_request_id(body: bytes, content_type: str) -> str | None:
    """The request id an error envelope carries: `request_id` (or `requestId`) at the top, or
    inside `error` or the first of `errors`. Read only for failed runs, so parsed here again."""
    text, undecodable = decode_body(body, content_type, parses_json=True)
    if undecodable or not text.lstrip().startswith("{"):
        return None
    document, _ = _parse_json(text)
    if not isinstance(document, dict):
        return None
    errors = document.get("errors")
    holders = [document, document.get("error"), errors[0] if isinstance(errors, list) else None]
    for holder in holders:
        if not isinstance(holder, dict):
            continue
        for key in _ENVELOPE_ID_KEYS:
            value = holder.get(key)
            if isinstance(value, str) and value.strip():
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
    return None


def _error_text(value: Any) -> str:
    """The most human part of an error object: its message, else the whole thing, short."""
    if isinstance(value, dict):
        for key in ("message", "error_description", "detail", "error", "result", "msg"):
            inner = value.get(key)
            if isinstance(inner, str) and inner:
                return inner[:200]
            if isinstance(inner, dict):
                return _error_text(inner)
    if isinstance(value, str):
        return value[:200]
    return _show(value)
