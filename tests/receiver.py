"""A real HTTP endpoint for Apprise's `json://` notifier that records what it is sent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Receiver:
    posts: list[dict[str, Any]] = field(default_factory=list)
    # The client port each post came from: which process sent it (tests/cluster.py `sender`).
    ports: list[int] = field(default_factory=list)
    failing: bool = False  # answer 503 (and record nothing) while set
    refused: int = 0
    port: int = 0
    # Called with each post once it is recorded, before the answer: e.g. to kill the sender
    # while it waits for it.
    on_post: Callable[[dict[str, Any]], None] | None = None
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        if self.failing:
            self.refused += 1
            return web.Response(status=503)
        self.posts.append(await request.json())
        assert request.transport is not None  # the request is being answered on it
        self.ports.append(int(request.transport.get_extra_info("peername")[1]))
        if self.on_post is not None:
            self.on_post(self.posts[-1])
        return web.Response(text="ok")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
