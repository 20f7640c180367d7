"""`type: graphql`: one query POSTed as JSON; `errors` in the answer fail the check.

GraphQL servers answer HTTP 200 for most failures, so the status alone says little: a non-empty
`errors` list is always a `body_error` (whatever `expect.body_errors` says), and `expect.json`
paths are evaluated on the whole answer (`$.data.viewer.login`).
"""

from __future__ import annotations

import functools
import json
from typing import Any, Literal

import yarl
from pydantic import Field, PrivateAttr

from checks.assertions import Expect
from checks.auth import AuthConfig
from checks.base import CheckConfig, Result, RunContext
from checks.http import RequestSpec, send
from checks.transport import HttpTransport
from monitor.core.units import HttpUrlText

_ACCEPT = "application/graphql-response+json, application/json;q=0.9"


class GraphqlCheck(HttpTransport, CheckConfig):
    type: Literal["graphql"] = "graphql"
    url: HttpUrlText
    query: str = Field(min_length=1)
    variables: dict[str, Any] = Field(default_factory=dict)
    operation_name: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    auth: AuthConfig | None = None
    expect: Expect = Field(default_factory=Expect)

    _request: RequestSpec = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        payload: dict[str, Any] = {"query": self.query, "variables": self.variables}
        if self.operation_name:
            payload["operationName"] = self.operation_name
        self._request = RequestSpec.model_validate(
            {
                "method": "POST",
                "url": self.url,
                "headers": {"Accept": _ACCEPT, **self.headers},
                "json": payload,
            }
        )

    def host_key(self) -> str | None:
        return self._host

    @functools.cached_property  # asked on every run (per-host cap); the URL never changes
    def _host(self) -> str | None:
        return yarl.URL(self.url).host

    def describe_target(self) -> str:
        return f"graphql {yarl.URL(self.url).with_query(None).with_user(None)}"

    def degraded_after(self) -> float | None:
        return self.expect.degraded_latency

    async def run(self, ctx: RunContext) -> Result:
        expect = self.expect
        if not expect.body_errors:
            expect = expect.model_copy(update={"body_errors": True})
        result, body = await send(ctx, self._request, expect, self, self.auth)
        if result.shape is not None:
            # What the query asked for drifts; `errors` are already failures of their own.
            result.shape = result.shape.under("$.data")
        if not result.ok and result.error_class in ("http_4xx", "http_5xx"):
            # GraphQL-over-HTTP servers explain a 4xx in `errors`: that is the useful part.
            message = _first_error(body)
            if message:
                result.reason += f": {message}"
        elif result.ok and _data_is_null(body):
            result.ok, result.error_class = False, "body_error"
            result.reason = "data is null and no errors were reported"
        return result


def _document(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _first_error(body: bytes) -> str | None:
    document = _document(body)
    errors = document.get("errors") if isinstance(document, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        message = errors[0].get("message")
        return message[:200] if isinstance(message, str) else None
    return None


def _data_is_null(body: bytes) -> bool:
    document = _document(body)
    return isinstance(document, dict) and "data" in document and document["data"] is None
