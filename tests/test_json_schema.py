"""`expect.json_schema`: bodies judged against a JSON Schema, the schema checked at load."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from checks.assertions import Expect, check_response
from checks.base import RunContext
from checks.flow import FlowCheck
from checks.graphql import GraphqlCheck
from checks.json_schema import MAX_SCHEMA_BYTES, JsonSchema
from monitor.config.loader import load_config, parse_config
from monitor.core.clock import SystemClock
from monitor.core.errors import ConfigError
from monitor.core.redact import Redactor
from monitor.engine.runner import Runner

ORDER = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "object",
            "required": ["total", "currency"],
            "properties": {
                "total": {"type": "number"},
                "currency": {"enum": ["EUR", "USD"]},
                "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}},
                "odd key": {"type": "string"},
            },
        }
    },
    "$defs": {"line": {"type": "object", "required": ["sku"]}},
}

BODIES = [
    ("matches", {"data": {"total": 12.5, "currency": "EUR", "lines": [{"sku": "a"}]}}, None),
    ("type", {"data": {"total": "abc", "currency": "EUR"}}, "$.data.total: 'abc' is not of type 'number' (type)"),
    ("required", {"data": {"total": 1}}, "$.data: 'currency' is a required property (required)"),
    ("enum", {"data": {"total": 1, "currency": "XBT"}}, "$.data.currency: 'XBT' is not one of ['EUR', 'USD'] (enum)"),
    ("ref-in-array", {"data": {"total": 1, "currency": "EUR", "lines": [{"sku": "a"}, {}]}}, "$.data.lines[1]: 'sku' is a required property (required)"),
    ("odd-key", {"data": {"total": 1, "currency": "EUR", "odd key": 3}}, "$.data['odd key']: 3 is not of type 'string' (type)"),
    ("root", [], "$: [] is not of type 'object' (type)"),
    ("long-value", {"data": {"total": "x" * 500, "currency": "EUR"}}, "$.data.total: '" + "x" * 156 + "... (type)"),
]  # fmt: skip


def judge(expect: Expect, body: bytes) -> tuple[str, str] | None:
    failure = check_response(
        expect,
        status=200,
        headers={"Content-Type": "application/json"},
        body=body,
        truncated=False,
        latency=0.01,
        cap=len(body) + 1,
    )
    return None if failure is None else (failure.error_class, failure.reason)


@pytest.mark.parametrize(("body", "reason"), [b[1:] for b in BODIES], ids=[b[0] for b in BODIES])
def test_a_body_is_judged_by_the_schema_naming_the_path_and_the_rule(
    body: Any, reason: str | None
) -> None:
    expect = Expect.model_validate({"json_schema": ORDER})
    outcome = judge(expect, json.dumps(body).encode())
    assert outcome == (None if reason is None else ("assertion", reason))


def test_a_body_that_is_not_json_is_an_invalid_response() -> None:
    expect = Expect.model_validate({"json_schema": ORDER, "body_errors": False})
    outcome = judge(expect, b"<html>oops</html>")
    assert outcome is not None
    assert outcome[0] == "invalid_response"


@pytest.mark.parametrize(
    ("draft", "body", "reason"),
    [
        # Draft 4's exclusiveMaximum is a flag; 2020-12's is the bound itself.
        ("http://json-schema.org/draft-04/schema#", 10, "$: 10 is greater than or equal to the maximum of 10 (maximum)"),
        ("https://json-schema.org/draft/2020-12/schema", 10, "$: 10 is greater than or equal to the maximum of 10 (exclusiveMaximum)"),
    ],
    ids=["draft-4", "draft-2020-12"],
)  # fmt: skip
def test_the_draft_comes_from_dollar_schema(draft: str, body: int, reason: str) -> None:
    schema: dict[str, Any] = {"$schema": draft, "type": "number"}
    if "draft-04" in draft:
        schema |= {"maximum": 10, "exclusiveMaximum": True}
    else:
        schema |= {"exclusiveMaximum": 10}
    assert JsonSchema(schema).violation(body) == reason


def test_the_validator_is_compiled_once_and_shared_by_copies() -> None:
    expect = Expect.model_validate({"json_schema": ORDER})
    # GraphQL checks copy their `expect` on every run (checks/graphql.py).
    copy = expect.model_copy(update={"body_errors": True})
    assert expect.json_schema is not None
    assert copy.json_schema is expect.json_schema
    assert expect == Expect.model_validate({"json_schema": ORDER})


def config_with(schema: str, tmp_path: Path) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        "checks:\n"
        "  - name: orders\n"
        '    request: {url: "http://127.0.0.1:1/"}\n'
        "    expect:\n"
        f"      json_schema: {schema}\n"
    )
    return path


def test_a_schema_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "order.json").write_text(json.dumps(ORDER))
    config = load_config(str(config_with("{file: schemas/order.json}", tmp_path)), env={})
    expect = config.checks[0].expect  # type: ignore[attr-defined]
    assert expect.json_schema.schema == ORDER


HOSTILE = [
    ("not-a-schema", "{type: numbr}", "json_schema: type: 'numbr' is not valid under any of the given schemas (not a valid JSON Schema)"),
    ("unknown-draft", "{$schema: 'https://example.com/my-draft'}", "json_schema: $schema 'https://example.com/my-draft' is not a draft (one of: http://json-schema.org/draft-04/schema, http://json-schema.org/draft-06/schema, http://json-schema.org/draft-07/schema, https://json-schema.org/draft/2019-09/schema, https://json-schema.org/draft/2020-12/schema)"),
    ("remote-ref", "{properties: {a: {$ref: 'https://schemas.example.com/a.json'}}}", "json_schema: $ref 'https://schemas.example.com/a.json' points outside the schema, and intmon fetches no schemas: put what it refers to in $defs"),
    ("relative-to-remote-id", "{$id: 'https://schemas.example.com/root.json', $ref: 'a.json'}", "json_schema: $ref 'a.json' points outside the schema, and intmon fetches no schemas: put what it refers to in $defs"),
    ("not-a-mapping", "[1, 2]", "json_schema: a JSON Schema is a mapping (or true/false)"),
    ("directory", "{file: .}", "json_schema: cannot read '.': Is a directory"),
    ("huge", "{file: huge.json}", f"json_schema: 'huge.json' is larger than {MAX_SCHEMA_BYTES // 2**20} MiB"),
    ("deep-json", "{file: deep.json}", "json_schema: 'deep.json' is not JSON: nested too deeply"),
    ("deep-schema", "{file: deeper.json}", "json_schema: deeper.json: the schema is nested too deeply"),
    ("not-json", "{file: broken.json}", "json_schema: 'broken.json' is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("schema", "message"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_a_bad_or_hostile_schema_is_a_config_error_at_its_key(
    tmp_path: Path, schema: str, message: str
) -> None:
    (tmp_path / "huge.json").write_text('{"description": "' + "x" * MAX_SCHEMA_BYTES + '"}')
    (tmp_path / "deep.json").write_text('{"items": ' * 5000 + "{}" + "}" * 5000)
    (tmp_path / "deeper.json").write_text('{"items": ' * 300 + "{}" + "}" * 300)
    (tmp_path / "broken.json").write_text("{{")
    path = config_with(schema, tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    assert str(info.value) == f"{path}:5: checks[0].expect.{message}"


@pytest.fixture
async def counting(serve: Callable[[web.Application], Awaitable[str]]) -> tuple[str, list[str]]:
    """A server any schema fetch would reach: it counts what it is asked for."""
    asked: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response({"name": "x", "type": "string"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    return await serve(app), asked


async def test_a_ref_to_a_url_is_never_fetched_at_load_or_at_run_time(
    ctx: RunContext, counting: tuple[str, list[str]]
) -> None:
    url, asked = counting
    remote = {"$ref": f"{url}/string.json"}
    with pytest.raises(ConfigError, match="fetches no schemas"):
        parse_config(
            json.dumps({"checks": [{"name": "a", "request": {"url": url}, "expect": {"json_schema": remote}}]}),
            env={},
        )  # fmt: skip
    # A reference the load cannot see through (a nested base URI) is refused when it is used.
    nested = {"properties": {"name": {"$id": f"{url}/sub/", "$ref": "string.json"}}}
    config = parse_config(
        json.dumps({"checks": [{"name": "a", "request": {"url": f"{url}/item"}, "expect": {"json_schema": nested}}]}),
        env={},
    )  # fmt: skip
    result = await Runner(ctx, 1, 1).execute(config.checks[0])
    assert (result.error_class, result.reason.split(":")[0]) == ("assertion", "json_schema")
    assert "intmon resolves only references inside the schema" in result.reason
    assert asked == ["/item"]  # the check's own request, and nothing else


async def test_a_check_against_a_real_target_fails_with_the_path_and_the_secret_masked(
    session: Any, serve: Callable[[web.Application], Awaitable[str]], tmp_path: Path
) -> None:
    async def order(request: web.Request) -> web.Response:
        # A provider echoing the credential in a field that breaks the schema.
        return web.json_response(
            {"data": {"total": f"key {request.query['key']}", "currency": "EUR"}}
        )

    app = web.Application()
    app.router.add_get("/order", order)
    url = await serve(app)
    (tmp_path / "order.json").write_text(json.dumps(ORDER))
    path = tmp_path / "monitor.yaml"
    path.write_text(
        "checks:\n"
        "  - name: orders\n"
        f"    request: {{url: '{url}/order?key=${{API_KEY}}'}}\n"
        "    expect: {json_schema: {file: order.json}}\n"
    )
    config = load_config(str(path), env={"API_KEY": "sk_live_123456"})
    ctx = RunContext(session, SystemClock(), Redactor(config.secrets), "intmon-test")
    result = await Runner(ctx, 1, 1).execute(config.checks[0])
    assert (result.error_class, result.reason) == (
        "assertion",
        "$.data.total: 'key ***' is not of type 'number' (type)",
    )


async def test_graphql_and_flow_steps_take_a_schema_too(ctx: RunContext, sandbox: str) -> None:
    status = {
        "properties": {
            "data": {"properties": {"status": {"properties": {"ok": {"type": "string"}}}}}
        }
    }
    gql = GraphqlCheck.model_validate(
        {"name": "gql", "url": sandbox + "/graphql", "query": "query Health { status { ok version } }", "expect": {"json_schema": status}}
    )  # fmt: skip
    flow = FlowCheck.model_validate(
        {"name": "f", "type": "flow", "steps": [{"name": "read", "request": {"url": sandbox + "/graphql", "method": "POST", "json": {"query": "query Health { status { ok version } }"}}, "expect": {"json_schema": status}}]}
    )  # fmt: skip
    gql_result = await Runner(ctx, 1, 1).execute(gql)
    flow_result = await Runner(ctx, 1, 1).execute(flow)
    wanted = "$.data.status.ok: True is not of type 'string' (type)"
    assert (gql_result.error_class, gql_result.reason) == ("assertion", wanted)
    assert flow_result.error_class == "assertion"
    assert wanted in flow_result.reason
