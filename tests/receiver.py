"""A JSON webhook receiver on 127.0.0.1 for the notification tests: the target apprise's ``json://`` scheme
posts to. It records each POST, answers with ``answer``, or holds the request open while ``hang`` is set."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Receiver:
    port: int = 0
    answer: int = 200
    hang: bool = False
    got: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append({"path": request.path_qs, "headers": dict(request.headers), "json": await request.json()})
        self.arrived.set()
        if self.hang:
            await self.released.wait()
        # The answer repeats the request's path and query: a receiver that echoes a token must not leak it.
        return web.Response(status=self.answer, text=f"answered {self.answer} to {request.path_qs}")

    def url(self, path: str = "/hook", userinfo: str = "") -> str:
        return f"json://{userinfo}127.0.0.1:{self.port}{path}"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [item["json"] for item in self.got]


@asynccontextmanager
async def running_receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", found.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    assert server.port is not None
    found.port = server.port
    try:
        yield found
    finally:
        found.released.set()
        await server.close()
