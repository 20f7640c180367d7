"""Flows against the sandbox: create -> read -> delete with OAuth2, idempotency and cleanup."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from checks.base import Result, RunContext
from checks.flow import FlowCheck
from checks.templating import MissingVariable, render, render_url
from monitor.core.clock import FakeClock
from monitor.core.redact import Redactor
from monitor.engine.runner import Runner
from monitor.sandbox import SANDBOX_CLIENT_SECRET


def crud_flow(sandbox: str, read_params: dict[str, Any] | None = None, **fields: Any) -> FlowCheck:
    auth = {
        "type": "oauth2_client_credentials",
        "token_url": sandbox + "/oauth/token",
        "client_id": "sandbox-client",
        "client_secret": SANDBOX_CLIENT_SECRET,
    }
    steps = [
        {
            "name": "create",
            "request": {
                "method": "POST",
                "url": "{{ base }}/api/items",
                "json": {"name": "intmon-probe", "run": "{{ run }}"},
                "idempotency_key": True,
            },
            "expect": {"status": 201},
            "extract": {"item_id": "$.id"},
        },
        {
            "name": "read",
            "request": {"url": "{{ base }}/api/items/{{ item_id }}", "params": read_params or {}},
            "expect": {"json": {"$.name": "intmon-probe"}},
        },
        {
            "name": "delete",
            "request": {"method": "DELETE", "url": "{{ base }}/api/items/{{ item_id }}"},
            "expect": {"status": 204},
            "always": True,
        },
    ]
    data = {"name": "crud", "type": "flow", "auth": auth, "steps": steps}
    data["variables"] = {"base": sandbox, "run": 1}
    return FlowCheck.model_validate(data | fields)


def as_data(flow: FlowCheck) -> dict[str, Any]:
    """The flow as config data, to vary one detail and validate again."""
    return flow.model_dump(mode="json", by_alias=True)


@pytest.fixture
def fake_ctx(session: aiohttp.ClientSession, clock: FakeClock) -> RunContext:
    return RunContext(session=session, clock=clock, redactor=Redactor())


async def run(ctx: RunContext, flow: FlowCheck) -> Result:
    return await Runner(ctx, concurrency=10, per_host=10).execute(flow)


async def sandbox_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        return await response.json()


async def test_a_crud_flow_runs_repeatedly_with_one_token_per_token_lifetime(
    fake_ctx: RunContext, clock: FakeClock, sandbox: str, session: aiohttp.ClientSession
) -> None:
    flow = crud_flow(sandbox)
    results = []
    for _ in range(6):  # every 20 s; the sandbox's tokens live 60 s, refreshed at 48 s
        results.append(await run(fake_ctx, flow))
        clock.advance(20)
    assert all(r.ok for r in results), [r.reason for r in results]
    stats = await sandbox_json(session, sandbox + "/stats")
    assert stats["/oauth/token"] == 2  # t=0 and t=60; never one per run
    assert stats["/api/items"] == 6
    keys = (await sandbox_json(session, sandbox + "/api/idempotency-keys"))["keys"]
    assert len(set(keys)) == len(keys) == 6  # every create carried its own key
    assert all(uuid.UUID(key).version == 4 for key in keys)
    assert (await sandbox_json(session, sandbox + "/api/items"))["items"] == []


async def test_each_step_is_recorded_with_its_status_and_latency(
    fake_ctx: RunContext, sandbox: str
) -> None:
    result = await run(fake_ctx, crud_flow(sandbox))
    assert result.ok, result.reason
    steps = result.signals["steps"]
    assert [(s["name"], s["status"], s["ok"]) for s in steps] == [
        ("create", 201, True),
        ("read", 200, True),
        ("delete", 204, True),
    ]
    assert all(s["latency"] > 0 for s in steps)
    assert result.latency == pytest.approx(sum(s["latency"] for s in steps), abs=0.01)


async def test_a_failing_read_names_the_step_and_cleanup_still_deletes_the_item(
    fake_ctx: RunContext, sandbox: str, session: aiohttp.ClientSession
) -> None:
    result = await run(fake_ctx, crud_flow(sandbox, read_params={"fail": 500}))
    assert (result.ok, result.error_class, result.status) == (False, "http_5xx", 500)
    assert result.reason == "step read: HTTP 500 (expected 2xx)"
    steps = {s["name"]: s for s in result.signals["steps"]}
    assert (steps["read"]["ok"], steps["delete"]["ok"], steps["delete"]["status"]) == (
        False,
        True,
        204,
    )
    assert (await sandbox_json(session, sandbox + "/api/items"))["items"] == []


async def test_a_read_cut_short_by_the_timeout_still_gets_its_cleanup(
    fake_ctx: RunContext, sandbox: str, session: aiohttp.ClientSession
) -> None:
    data = as_data(crud_flow(sandbox, timeout="300ms"))
    data["steps"][1]["request"]["url"] = sandbox + "/hang"
    result = await run(fake_ctx, FlowCheck.model_validate(data))
    assert (result.ok, result.error_class) == (False, "timeout")
    assert (await sandbox_json(session, sandbox + "/api/items"))["items"] == []


async def test_steps_after_a_failure_are_skipped_unless_always(
    fake_ctx: RunContext, sandbox: str, session: aiohttp.ClientSession
) -> None:
    flow = crud_flow(sandbox, variables={"base": sandbox + "/status/503#", "run": 1})
    result = await run(fake_ctx, flow)
    assert result.reason.startswith("step create: HTTP 503")
    # The create failed, so there is no item_id: cleanup has nothing to delete and is skipped.
    assert [(s["name"], s["ok"], s.get("skipped")) for s in result.signals["steps"]] == [
        ("create", False, None),
        ("read", None, True),
        ("delete", None, True),
    ]


async def test_an_extract_that_finds_nothing_fails_its_step(
    fake_ctx: RunContext, sandbox: str
) -> None:
    data = as_data(crud_flow(sandbox))
    data["steps"][0]["extract"] = {"item_id": "$.nope"}
    result = await run(fake_ctx, FlowCheck.model_validate(data))
    assert result.reason == "step create: extract item_id: $.nope not found in the response"
    assert result.error_class == "assertion"


def test_a_variable_no_step_defines_is_a_config_error(sandbox: str) -> None:
    data = as_data(crud_flow(sandbox))
    data["steps"][1]["request"]["url"] = "{{ base }}/api/items/{{ itme_id }}"
    with pytest.raises(ValidationError, match=r"step read uses \{\{ itme_id \}\}"):
        FlowCheck.model_validate(data)


def test_a_flow_describes_its_steps_and_its_host(sandbox: str) -> None:
    flow = crud_flow(sandbox)
    assert flow.describe_target() == "flow: create -> read -> delete"
    assert flow.host_key() == "127.0.0.1"


RENDER = [
    ("whole-string-keeps-type", {"id": "{{ n }}"}, {"id": 7}),
    ("inside-text", "item {{ n }} of {{ s }}", "item 7 of a/b"),
    ("nested", [{"x": ["{{ s }}"]}], [{"x": ["a/b"]}]),
    ("object-in-text", "q={{ o }}", 'q={"k": true}'),
    ("no-placeholder", {"n": 1}, {"n": 1}),
]


@pytest.mark.parametrize(
    ("template", "expected"), [r[1:] for r in RENDER], ids=[r[0] for r in RENDER]
)
def test_placeholders_render_into_json_bodies(template: Any, expected: Any) -> None:
    assert render(template, {"n": 7, "s": "a/b", "o": {"k": True}}) == expected


def test_url_values_are_encoded_except_a_leading_base() -> None:
    variables = {"base": "https://api.example.com/v2", "id": "a/b c"}
    assert render_url("{{ base }}/items/{{ id }}", variables) == (
        "https://api.example.com/v2/items/a%2Fb%20c"
    )


def test_a_missing_variable_names_itself() -> None:
    with pytest.raises(MissingVariable) as caught:
        render("{{ gone }}", {})
    assert caught.value.name == "gone"


async def test_a_token_a_login_step_extracted_is_masked_where_the_provider_repeats_it(
    fake_ctx: RunContext, serve: Any
) -> None:
    async def login(request: web.Request) -> web.Response:
        return web.json_response({"token": "sess-tok-7f3a9c21"})

    async def orders(request: web.Request) -> web.Response:
        return web.json_response({"error": f"bad session {request.headers['Authorization']}"})

    app = web.Application()
    app.router.add_post("/login", login)
    app.router.add_get("/orders", orders)
    base = await serve(app)
    login_step = {"method": "POST", "url": base + "/login"}
    orders_step = {"url": base + "/orders", "headers": {"Authorization": "Bearer {{ t }}"}}
    steps: list[dict[str, Any]] = [
        {"name": "login", "request": login_step, "extract": {"t": "$.token"}},
        {"name": "orders", "request": orders_step},
    ]
    flow = FlowCheck.model_validate({"name": "f", "type": "flow", "steps": steps})
    result = await run(fake_ctx, flow)
    assert result.reason == "step orders: error: bad session Bearer ***"
    assert result.signals["steps"][1]["reason"] == "error: bad session Bearer ***"
