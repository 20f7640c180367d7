"""GraphQL checks against the sandbox's endpoint and small servers that misbehave."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from checks.base import Result, RunContext
from checks.graphql import GraphqlCheck
from monitor.engine.runner import Runner


def graphql(url: str, query: str, **fields: Any) -> GraphqlCheck:
    return GraphqlCheck.model_validate({"name": "gql", "url": url, "query": query, **fields})


async def run(ctx: RunContext, check: GraphqlCheck) -> Result:
    return await Runner(ctx, concurrency=10, per_host=10).execute(check)


async def test_a_query_whose_data_matches_expect_passes(ctx: RunContext, sandbox: str) -> None:
    check = graphql(
        sandbox + "/graphql",
        "query Health { status { ok version } }",
        expect={"json": {"$.data.status.ok": True, "$.data.status.version": {"regex": "^2"}}},
    )
    result = await run(ctx, check)
    assert result.ok, result.reason
    assert result.status == 200


async def test_variables_are_sent_with_the_query(ctx: RunContext, sandbox: str) -> None:
    check = graphql(
        sandbox + "/graphql",
        "query Echo($value: String) { echo(value: $value) }",
        variables={"value": "ping"},
        expect={"json": {"$.data.echo": "ping"}},
    )
    result = await run(ctx, check)
    assert result.ok, result.reason


NOT_OK = {"json": {"$.data.status.ok": False}}
FAILING = [
    ("errors-with-200", {}, "body_error", "errors: Cannot query field 'nope' on type 'Query'."),
    ("errors-even-if-body-errors-off", {"expect": {"body_errors": False}}, "body_error", "errors:"),
    ("expect-on-data", {"query": "{ status { ok } }", "expect": NOT_OK},
     "assertion", "$.data.status.ok is true, expected false"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "error_class", "reason"), [f[1:] for f in FAILING], ids=[f[0] for f in FAILING]
)
async def test_graphql_failures_carry_their_error_class_and_reason(
    ctx: RunContext, sandbox: str, fields: dict[str, Any], error_class: str, reason: str
) -> None:
    data = {"name": "gql", "url": sandbox + "/graphql", "query": "{ nope }", **fields}
    result = await run(ctx, GraphqlCheck.model_validate(data))
    assert (result.ok, result.error_class) == (False, error_class)
    assert result.reason.startswith(reason), result.reason


def misbehaving_server(status: int, body: dict[str, Any]) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_post("/graphql", answer)
    return app


SERVERS = [
    ("400-explains-itself", 400, {"errors": [{"message": "Syntax Error: Expected Name"}]},
     "http_4xx", "HTTP 400 (expected 2xx): Syntax Error: Expected Name"),
    ("null-data", 200, {"data": None}, "body_error", "data is null and no errors were reported"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "body", "error_class", "reason"),
    [s[1:] for s in SERVERS],
    ids=[s[0] for s in SERVERS],
)
async def test_a_server_answering_badly_fails_with_the_useful_part(
    ctx: RunContext, serve: Any, status: int, body: dict[str, Any], error_class: str, reason: str
) -> None:
    url = await serve(misbehaving_server(status, body))
    result = await run(ctx, graphql(url + "/graphql", "{ status { ok } }"))
    assert (result.error_class, result.reason) == (error_class, reason)


async def test_the_request_is_a_json_post_with_query_variables_and_operation_name(
    ctx: RunContext, serve: Any
) -> None:
    received: list[Any] = []

    async def capture(request: web.Request) -> web.Response:
        received.append((request.content_type, request.headers["Accept"], await request.json()))
        return web.json_response({"data": {"ok": True}})

    app = web.Application()
    app.router.add_post("/graphql", capture)
    url = await serve(app)
    check = graphql(url + "/graphql", "query Q { ok }", variables={"a": 1}, operation_name="Q")
    assert (await run(ctx, check)).ok
    content_type, accept, payload = received[0]
    assert content_type == "application/json"
    assert accept.startswith("application/graphql-response+json")
    assert payload == {"query": "query Q { ok }", "variables": {"a": 1}, "operationName": "Q"}
