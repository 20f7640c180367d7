"""The hostile targets of `make chaos` (chaos_hostile.py), each failing as third-party APIs do:
a body without end, a server that never answers, one that drips a byte at a time, a redirect
loop, a gzip bomb, a body that is not UTF-8, a flood of headers, connections reset mid-request.
All bound to 127.0.0.1, port 0; every handler ends by itself within 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import zlib
from collections import Counter

from aiohttp import web

MB = 1024 * 1024


def gzip_bomb(expanded: int = 256 * MB) -> bytes:
    """`expanded` bytes of zeros, gzip-compressed to about a thousandth of that."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(MB)
    parts = [packer.compress(chunk) for _ in range(expanded // MB)]
    return b"".join([*parts, packer.flush()])


async def huge(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    chunk = b"x" * (64 * 1024)
    with contextlib.suppress(ConnectionError):
        for _ in range(16 * 1024):  # at most 1 GiB: the client gives up long before
            await response.write(chunk)
    return response


async def drip(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):
        for _ in range(60):  # 30 s at most
            await response.write(b" ")
            await asyncio.sleep(0.5)
    return response


async def redirect_loop(request: web.Request) -> web.Response:
    raise web.HTTPFound("/redirect-loop")


def hostile_app(bomb: bytes) -> web.Application:
    async def gzip(request: web.Request) -> web.Response:
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return web.Response(body=bomb, headers=headers)

    async def bad_utf8(request: web.Request) -> web.Response:
        body = b'{"status": "ok", "name": "caf\xe9 \xff\xfe"}'
        return web.Response(body=body, content_type="application/json", charset="utf-8")

    app = web.Application()
    app.router.add_get("/huge", huge)
    app.router.add_get("/drip", drip)
    app.router.add_get("/redirect-loop", redirect_loop)
    app.router.add_get("/gzip-bomb", gzip)
    app.router.add_get("/bad-utf8", bad_utf8)
    return app


class RawServers:
    """Targets below HTTP: one that never answers, one that floods headers, one that resets."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.urls: dict[str, str] = {}

    async def start(self) -> None:
        for name, handler in (
            ("hang", self._hang),
            ("header-flood", self._flood),
            ("reset", self._reset),
        ):
            server = await asyncio.start_server(self._track(handler), "127.0.0.1", 0)
            self.servers.append(server)
            self.urls[name] = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/{name}"

    def _track(self, handler):  # type: ignore[no-untyped-def]
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self.tasks.add(task)
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.CancelledError):
                pass  # the client hung up or the scenario ended: nothing left to serve
            finally:
                self.tasks.discard(task)
                writer.close()

        return run

    async def _hang(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(30)  # longer than any timeout; the client must give up first

    async def _flood(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        for i in range(100_000):  # ~2.5 MB of headers
            if writer.is_closing():
                return  # the client gave up, as it should: writing on would only log noise
            writer.write(b"X-Flood-%d: %s\r\n" % (i, b"v" * 10))
            if i % 100 == 0:
                await writer.drain()
        writer.write(b"Content-Length: 2\r\n\r\n{}")
        await writer.drain()

    async def _reset(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        sock = writer.get_extra_info("socket")
        # Linger 0: close() sends RST instead of FIN, a connection reset by peer.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for server in self.servers:
            server.close()
            await server.wait_closed()


async def healthy_server() -> tuple[web.AppRunner, str, Counter[str]]:
    served: Counter[str] = Counter()

    async def ok(request: web.Request) -> web.Response:
        served[request.match_info["name"]] += 1
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/ok/{name}", ok)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "::1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://[::1]:{port}", served


class Hostile:
    """Every hostile target, started together: `urls` maps each name of EXPECTED to its URL."""

    def __init__(self) -> None:
        self.raw = RawServers()
        self.runner: web.AppRunner | None = None
        self.urls: dict[str, str] = {}

    async def start(self) -> Hostile:
        # ~0.25 MB on the wire, 256 MiB once inflated; built off the loop, it takes a second.
        bomb = await asyncio.get_running_loop().run_in_executor(None, gzip_bomb)
        self.runner = web.AppRunner(hostile_app(bomb), access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        for name in ("huge", "drip", "redirect-loop", "gzip-bomb", "bad-utf8"):
            self.urls[name] = f"http://127.0.0.1:{port}/{name}"
        await self.raw.start()
        self.urls.update(self.raw.urls)
        return self

    async def stop(self) -> None:
        await self.raw.stop()
        if self.runner is not None:
            await self.runner.cleanup()
