"""`type: flow`: ordered requests sharing variables, the way client code really uses an API.

A step's variables come from `variables:` and from `extract:` of earlier steps (JSONPath on the
response body). `always: true` steps (cleanup) run even after an earlier step failed, and even
when the runner's timeout cuts the flow short (for at most CLEANUP_GRACE), so a failing read does
not leave test data behind in the provider's account.

The result's latency is the sum of the steps' latencies: time spent waiting on the provider,
not on intmon (token requests, rendering, the cleanup grace after a timeout).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from typing import Any, Literal

import jsonpath
import yarl
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from checks.assertions import Expect, compile_path
from checks.auth import AuthConfig
from checks.base import CheckConfig, Result, RunContext
from checks.http import RequestSpec, send
from checks.templating import (
    PLACEHOLDER,
    MissingVariable,
    references,
    render,
    render_text,
    render_url,
)
from checks.transport import HttpTransport
from monitor.core.jsonshape import Shape, combine
from monitor.core.model import NAME_PATTERN, Model
from monitor.core.units import require_http_url

log = logging.getLogger(__name__)

CLEANUP_GRACE = 5.0  # seconds `always` steps may still use after the flow's timeout
_VARIABLE = r"^[A-Za-z_][A-Za-z0-9_]*$"


class StepRequest(RequestSpec):
    """A RequestSpec whose url, headers, params and json/body may hold `{{ var }}`."""

    # Redeclared without RequestSpec's URL check: placeholders are not a URL yet.
    url: str

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        # A leading placeholder supplies scheme and host (`{{ base }}/items`): checked when run.
        if not PLACEHOLDER.match(value):
            require_http_url(PLACEHOLDER.sub("x", value))
        return value


class Step(Model):
    name: str = Field(pattern=NAME_PATTERN, max_length=64)
    request: StepRequest
    expect: Expect = Field(default_factory=Expect)
    extract: dict[str, str] = Field(default_factory=dict)  # variable -> JSONPath
    always: bool = False

    _paths: dict[str, jsonpath.JSONPath | jsonpath.CompoundJSONPath] = PrivateAttr(
        default_factory=dict
    )

    @field_validator("extract")
    @classmethod
    def _extract(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if not re.match(_VARIABLE, name):
                raise ValueError(f"{name!r} is not a variable name (letters, digits, _)")
            compile_path(path)
        return value

    def model_post_init(self, context: Any) -> None:
        self._paths = {name: compile_path(path) for name, path in self.extract.items()}

    @functools.cached_property  # asked on every run; the step's headers never change
    def header_variables(self) -> frozenset[str]:
        """The variables this step sends in a header: credentials of the run."""
        return frozenset(references(self.request.headers))


class FlowCheck(HttpTransport, CheckConfig):
    type: Literal["flow"] = "flow"
    auth: AuthConfig | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _variables_defined_before_use(self) -> FlowCheck:
        """A typo in `{{ var }}` is a config error, not a 3 a.m. page."""
        defined, seen = set(self.variables), set()
        for step in self.steps:
            if step.name in seen:
                raise ValueError(f"two steps are named {step.name!r}")
            seen.add(step.name)
            used = references(step.request.model_dump(by_alias=True, exclude={"method"}))
            for name in sorted(used - defined):
                raise ValueError(
                    f"step {step.name} uses {{{{ {name} }}}}, which neither `variables` nor "
                    "an earlier step's `extract` defines"
                )
            defined |= set(step.extract)
        return self

    def host_key(self) -> str | None:
        return self._first_host

    @functools.cached_property  # asked on every run; the first URL's template never changes
    def _first_host(self) -> str | None:
        try:
            return yarl.URL(render_url(self.steps[0].request.url, self.variables)).host
        except MissingVariable:
            return None  # the host comes from a response: no per-host cap applies

    def describe_target(self) -> str:
        return "flow: " + " -> ".join(step.name for step in self.steps)

    async def run(self, ctx: RunContext) -> Result:
        flow = _FlowRun(self, ctx)
        try:
            for step in self.steps:
                await flow.run_step(step)
        except asyncio.CancelledError:
            # The runner's timeout (or shutdown) cut the flow short. Cleanup still gets a
            # short grace: leftover test data in a customer's account is worse than lateness.
            try:
                async with asyncio.timeout(CLEANUP_GRACE):
                    await flow.cleanup()
            except (TimeoutError, asyncio.CancelledError):
                log.warning("flow %s: cleanup did not finish after the timeout", self.name)
            raise
        return flow.result()


class _FlowRun:
    """One run of a flow: its variables, its step records, and its first failure."""

    def __init__(self, flow: FlowCheck, ctx: RunContext) -> None:
        self.flow = flow
        self.ctx = ctx
        self.variables: dict[str, Any] = dict(flow.variables)
        self.records: list[dict[str, Any]] = []
        self.done: set[str] = set()
        self.failure: tuple[str, Result] | None = None
        self.also_failed: list[str] = []
        self.last: Result | None = None
        self.latency = 0.0
        self.shapes: list[Shape] = []  # each step's body shape, under the step's name

    async def run_step(self, step: Step) -> None:
        self.done.add(step.name)
        if self.failure is not None and not step.always:
            self.records.append({"name": step.name, "ok": None, "skipped": True})
            return
        result = await self._execute(step)
        if result is None:
            return
        self.last = result
        self.latency += result.latency or 0.0
        if result.shape is not None:
            self.shapes.append(result.shape.prefixed(step.name))
        record: dict[str, Any] = {"name": step.name, "ok": result.ok, "status": result.status}
        record["latency"] = round(result.latency, 4) if result.latency is not None else None
        if not result.ok:
            record |= {"error_class": result.error_class, "reason": result.reason}
            if self.failure is None:
                self.failure = (step.name, result)
            else:
                self.also_failed.append(step.name)
        self.records.append(record)

    async def cleanup(self) -> None:
        for step in self.flow.steps:
            if step.always and step.name not in self.done:
                await self.run_step(step)

    async def _execute(self, step: Step) -> Result | None:
        try:
            request = _render(step.request, self.variables)
        except MissingVariable as exc:
            reason = f"variable {exc.name!r} is not set"
            if self.failure is not None:
                # Cleanup of something an earlier failed step never created: nothing to do.
                self.records.append({"name": step.name, "ok": None, "skipped": True})
                return None
            return Result.failure("assertion", reason)
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
            return Result.failure("assertion", f"request is invalid once rendered: {problem}")
        # A value sent in a header (the session token a login step extracted) is a credential
        # of this run, masked like `auth:` values wherever the provider repeats it.
        for name in step.header_variables:
            if isinstance(self.variables.get(name), str):
                self.ctx.secrets.add(self.variables[name])
        result, body = await send(self.ctx, request, step.expect, self.flow, self.flow.auth)
        if result.ok and step.extract:
            not_found = _extract(step, body, self.variables)
            if not_found is not None:
                result.ok, result.error_class, result.reason = False, "assertion", not_found
        return result

    def result(self) -> Result:
        signals: dict[str, Any] = {"steps": self.records}
        last = self.last
        common: dict[str, Any] = {"latency": self.latency, "signals": signals}
        if self.shapes:
            common["shape"] = combine(self.shapes)
        if last is not None:
            common |= {"headers": last.headers, "tls_not_after": last.tls_not_after}
        if self.failure is None:
            status = last.status if last else None
            return Result(ok=True, reason=f"{len(self.records)} steps ok", status=status, **common)
        name, failed = self.failure
        if failed.headers is not None:
            # The failing step's answer: its request id is the one to quote, and its
            # Retry-After the one to honour, even when cleanup steps answered after it.
            common["headers"] = failed.headers
        common["request_id"] = failed.request_id
        reason = f"step {name}: {failed.reason}"
        if self.also_failed:
            reason += f" (and step {', '.join(self.also_failed)} failed too)"
        error_class = failed.error_class or "assertion"
        return Result.failure(error_class, reason, status=failed.status, **common)


def _render(request: StepRequest, variables: dict[str, Any]) -> RequestSpec:
    data: dict[str, Any] = {
        "method": request.method,
        "url": render_url(request.url, variables),
        "headers": {
            render_text(k, variables): render_text(v, variables) for k, v in request.headers.items()
        },
        "params": {
            k: render_text(v, variables) if isinstance(v, str) else v
            for k, v in request.params.items()
        },
        "json": render(request.json_, variables),
        "body": render_text(request.body, variables) if request.body is not None else None,
        "idempotency_key": request.idempotency_key,
    }
    return RequestSpec.model_validate(data)


def _extract(step: Step, body: bytes, variables: dict[str, Any]) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return f"cannot extract {', '.join(step.extract)}: the response is not JSON"
    for name, path in step._paths.items():
        values = path.findall(document)
        if not values:
            return f"extract {name}: {step.extract[name]} not found in the response"
        variables[name] = values[0]
    return None
