"""Fixtures for the simulator's own tests: a running simulator, a small team, a webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gitea_sim.testing import SimHandle, SimUser, free_port, running_sim


@pytest.fixture
async def gitea(tmp_path: Path) -> AsyncIterator[SimHandle]:
    async with running_sim(tmp_path / "gitea") as handle:
        yield handle


@pytest.fixture
async def forgejo(tmp_path: Path) -> AsyncIterator[SimHandle]:
    async with running_sim(tmp_path / "forgejo", flavour="forgejo") as handle:
        yield handle


@dataclass
class Team:
    owner: SimUser
    writer: SimUser
    reader: SimUser
    repo: str


async def make_team(g: SimHandle) -> Team:
    owner = await g.create_user("alice")
    writer = await g.create_user("bob")
    reader = await g.create_user("rita")
    repo = await g.create_repo(owner, "demo")
    await g.add_collaborator(repo, "bob", "write")
    await g.add_collaborator(repo, "rita", "read")
    return Team(owner, writer, reader, repo)


@pytest.fixture
async def team(gitea: SimHandle) -> Team:
    return await make_team(gitea)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event_type(self) -> str:
        return self.headers.get("X-Gitea-Event-Type", "")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook endpoint that records every delivery; answers `status` (200 unless changed)."""

    url: str
    received: list[Received] = field(default_factory=list)
    status: int = 200
    event: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, pred: Callable[[Received], bool], within_s: float = 10.0) -> Received:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            for r in self.received:
                if pred(r):
                    return r
            self.event.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no matching delivery; got {[r.event_type for r in self.received]}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), remaining)

    def of_type(self, event_type: str) -> list[Received]:
        return [r for r in self.received if r.event_type == event_type]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    rec = Receiver(url=f"http://127.0.0.1:{port}/webhook")

    async def handle(request: web.Request) -> web.Response:
        rec.received.append(Received(dict(request.headers), await request.read()))
        rec.event.set()
        return web.Response(status=rec.status)

    app = web.Application()
    app.router.add_post("/webhook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield rec
    await runner.cleanup()
