"""The provider's request id: read from headers or an error envelope, masked, quoted, kept."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from checks.assertions import envelope_request_id
from checks.base import Result, RunContext
from checks.flow import FlowCheck
from checks.http import HttpCheck
from monitor.core.clock import FakeClock
from monitor.core.redact import Redactor
from monitor.engine.runner import Runner, seal
from monitor.signals.headers import REQUEST_ID_HEADERS, request_id_from_headers

ServeFn = Callable[[web.Application], Awaitable[str]]


def headers(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Request-Id", "5f0c1a2b-3c4d"),
        ("Request-Id", "req_J8d9s0aZx"),
        ("X-Amzn-RequestId", "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"),
        ("X-Amz-Request-Id", "4442587FB7D0A2F9"),
        ("X-GitHub-Request-Id", "CDE4:3F6A:1B2C3D:1C2D3E:66F0A1B2"),
        ("X-Ms-Request-Id", "0b3a1c2d-1234-5678-9abc-def012345678"),
        ("X-Correlation-Id", "corr-77"),
        ("X-Amz-Cf-Id", "Zx8vQmM5nA=="),
        ("CF-Ray", "8c1f2e3d4a5b6c7d-FRA"),
        ("X-Cloud-Trace-Context", "105445aa7843bc8bf206b12000100000/1;o=1"),
    ],
    ids=lambda v: v if v.startswith(("X-", "Req", "CF")) else "",
)
def test_each_usual_header_gives_the_request_id(name: str, value: str) -> None:
    assert name in REQUEST_ID_HEADERS
    assert request_id_from_headers(CIMultiDictProxy(CIMultiDict({name: value})), None) == value


def test_the_providers_own_id_wins_over_the_cdns_and_blank_values_are_skipped() -> None:
    sent = headers(CF_Ray="ray-1", X_Request_Id="  ", Request_Id="req-2")
    assert request_id_from_headers(sent, None) == "req-2"


def test_a_checks_own_headers_replace_the_usual_ones() -> None:
    sent = headers(X_Request_Id="usual", X_Trace="mine")
    assert request_id_from_headers(sent, ["X-Trace"]) == "mine"
    assert request_id_from_headers(sent, []) is None


def test_an_id_is_one_line_and_bounded() -> None:
    sent = headers(X_Request_Id="a\tb  c" + "x" * 300)
    found = request_id_from_headers(sent, None)
    assert found is not None and found.startswith("a b cx") and len(found) == 128


@pytest.mark.parametrize(
    ("body", "found"),
    [
        ({"request_id": "top-1", "error": "boom"}, "top-1"),
        ({"requestId": "camel-2"}, "camel-2"),
        ({"error": {"message": "no", "request_id": "nested-3"}}, "nested-3"),
        ({"errors": [{"message": "no", "requestId": "graphql-4"}]}, "graphql-4"),
        ({"error": {"request_id": 12345}}, "12345"),
        ({"error": {"message": "no id here"}}, None),
        (["request_id"], None),
    ],
    ids=["top-level", "camel-case", "in-error", "in-errors", "a-number", "none", "a-list"],
)
def test_an_error_envelope_gives_its_request_id(body: object, found: str | None) -> None:
    assert envelope_request_id(json.dumps(body).encode(), "application/json") == found


def test_a_body_that_is_not_json_has_no_envelope_id() -> None:
    assert envelope_request_id(b"<html>request_id: 1</html>", "text/html") is None
    assert envelope_request_id(b"\xff{", "application/json") is None


def unsealed(ok: bool, request_id: str | None = None, **sent: str) -> Result:
    return Result(
        ok=ok,
        error_class=None if ok else "http_5xx",
        reason="HTTP 200" if ok else "HTTP 503 (expected 2xx)",
        status=200 if ok else 503,
        headers=headers(**sent) if sent else None,
        request_id=request_id,
    )


def test_a_failure_quotes_its_request_id_and_a_header_wins_over_the_envelope(
    clock: FakeClock,
) -> None:
    result = seal(
        unsealed(False, "from-envelope", X_Request_Id="from-header"), clock.time(), Redactor(), ()
    )
    assert result.request_id == "from-header"
    assert result.reason == "HTTP 503 (expected 2xx) (request id from-header)"
    assert result.headers is None
    envelope_only = seal(unsealed(False, "from-envelope"), clock.time(), Redactor(), ())
    assert envelope_only.reason.endswith("(request id from-envelope)")


def test_a_passing_run_keeps_its_id_without_changing_its_reason(clock: FakeClock) -> None:
    result = seal(unsealed(True, X_Request_Id="ok-1"), clock.time(), Redactor(), ())
    assert (result.request_id, result.reason) == ("ok-1", "HTTP 200")


def test_a_secret_reflected_into_a_request_id_header_is_masked(clock: FakeClock) -> None:
    redactor = Redactor(["s3cr3t-token-value"])
    sent = unsealed(False, X_Request_Id="id-s3cr3t-token-value")
    result = seal(sent, clock.time(), redactor, ())
    assert result.request_id == "id-***"
    assert "s3cr3t" not in result.reason


async def test_a_check_reads_the_id_from_its_configured_header_through_the_runner(
    ctx: RunContext, serve: ServeFn
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response(
            {"error": {"message": "down", "request_id": "env-9"}},
            status=502,
            headers={"X-Vendor-Trace": "vendor-7", "X-Request-Id": "generic-1"},
        )

    app = web.Application()
    app.router.add_get("/", answer)
    url = await serve(app)
    runner = Runner(ctx, 4, 4)
    own = HttpCheck.model_validate(
        {"name": "own", "request": {"url": url}, "request_id_headers": ["X-Vendor-Trace"]}
    )
    usual = HttpCheck.model_validate({"name": "usual", "request": {"url": url}})
    envelope = HttpCheck.model_validate(
        {"name": "envelope", "request": {"url": url}, "request_id_headers": []}
    )
    ids = []
    for check in (own, usual, envelope):
        result = await runner.execute(check)
        assert result is not None
        ids.append((result.request_id, result.reason))
    assert ids == [
        ("vendor-7", "HTTP 502 (expected 2xx) (request id vendor-7)"),
        ("generic-1", "HTTP 502 (expected 2xx) (request id generic-1)"),
        ("env-9", "HTTP 502 (expected 2xx) (request id env-9)"),
    ]


async def test_a_failing_flow_quotes_the_id_of_its_failing_step_not_of_its_cleanup(
    ctx: RunContext, serve: ServeFn
) -> None:
    async def step(request: web.Request) -> web.Response:
        name = request.match_info["step"]
        status = 500 if name == "read" else 200
        return web.json_response({}, status=status, headers={"X-Request-Id": f"id-{name}"})

    app = web.Application()
    app.router.add_route("*", "/{step}", step)
    url = await serve(app)
    flow = FlowCheck.model_validate(
        {
            "name": "roundtrip",
            "type": "flow",
            "steps": [
                {"name": name, "request": {"url": f"{url}/{name}"}, "always": name == "delete"}
                for name in ("create", "read", "delete")
            ],
        }
    )
    result = await Runner(ctx, 4, 4).execute(flow)
    assert result is not None and result.request_id == "id-read"
    assert result.reason == "step read: HTTP 500 (expected 2xx) (request id id-read)"
    passing = flow.model_copy(update={"steps": [flow.steps[0], flow.steps[2]]})
    result = await Runner(ctx, 4, 4).execute(passing)
    assert result is not None and (result.ok, result.request_id) == (True, "id-delete")
