"""End-to-end fixtures: the Gitea simulator (real git, a CI running the repository's own script), a real
PostgreSQL, and the bot's app listening on 127.0.0.1 so the simulator's webhooks reach it."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import create_app
from bot.clock import Clock
from bot.config import Settings, load_settings
from bot.db.models import Entry, PullRequest, Repository
from gitea_sim.testing import SimHandle, SimUser, free_port, running_sim

T = TypeVar("T")
POLL_SECONDS = 0.05

# The repository's own test: green unless both feature flags exist, so two PRs that are each green alone
# are red together (the scenario behind this project).
CI_SCRIPT = """#!/bin/sh
set -e
test -f app.txt
if [ -f feature-a.flag ] && [ -f feature-b.flag ]; then
  echo "feature a and feature b are incompatible" >&2
  exit 1
fi
if [ -f broken.flag ]; then
  echo "broken" >&2
  exit 1
fi
"""


async def eventually(check: Callable[[], Awaitable[T | None]], *, within: float = 60.0, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what or check}")
        await asyncio.sleep(POLL_SECONDS)


@dataclass
class World:
    sim: SimHandle
    repo: str
    owner: SimUser
    bot: SimUser
    alice: SimUser
    maint: SimUser
    reader: SimUser
    engine: AsyncEngine
    settings: Settings

    async def open_pr(
        self,
        branch: str,
        files: dict[str, str | None],
        *,
        author: SimUser | None = None,
        repo: str = "",
        body: str = "",
        title: str = "",
    ) -> int:
        who = author or self.alice
        where = repo or self.repo
        await self.sim.push_commit(where, who, branch, files, message=f"Change on {branch}", base="main")
        pr = await self.sim.create_pr(where, who, head=branch, base="main", title=title or f"PR {branch}", body=body)
        return int(pr["number"])

    async def queue(self, number: int, command: str = "/merge", *, by: SimUser | None = None, repo: str = "") -> None:
        await self.sim.comment(repo or self.repo, number, by or self.maint, command)

    async def entry(self, number: int, repo: str = "") -> Entry | None:
        name = (repo or self.repo).split("/")[1]
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(Entry.__table__)
                    .join(PullRequest, PullRequest.id == Entry.pull_request_id)
                    .join(Repository, Repository.id == PullRequest.repository_id)
                    .where(PullRequest.number == number, Repository.name == name)
                    .order_by(Entry.id.desc())
                    .limit(1)
                )
            ).first()
        return row  # type: ignore[return-value]

    async def in_state(self, number: int, state: str, within: float = 60.0, repo: str = "") -> Any:
        async def check() -> Any:
            entry = await self.entry(number, repo)
            return entry if entry is not None and entry.state == state else None

        return await eventually(check, within=within, what=f"PR #{number} to be {state}")

    async def final_entry(self, number: int, within: float = 60.0, repo: str = "") -> Any:
        async def done() -> Any:
            entry = await self.entry(number, repo)
            return entry if entry is not None and entry.state in ("merged", "failed", "cancelled") else None

        return await eventually(done, within=within, what=f"PR #{number} to reach a final state")

    async def reconciled(self) -> None:
        """Wait until the reconciler made its first pass (which only records where the comments stand)."""

        async def check() -> bool:
            async with self.engine.connect() as connection:
                at = await connection.scalar(select(Repository.reconciled_at).where(Repository.name == "app"))
            return at is not None

        await eventually(check, within=30, what="the first reconciler pass")

    async def main_sha(self) -> str:
        data = await self.sim.api("GET", f"/repos/{self.repo}/branches/main")
        return str(data["commit"]["id"])

    async def statuses(self, sha: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = await self.sim.api("GET", f"/repos/{self.repo}/commits/{sha}/statuses")
        return data

    async def comments(self, number: int, repo: str = "") -> list[str]:
        data = await self.sim.api("GET", f"/repos/{repo or self.repo}/issues/{number}/comments")
        return [str(item["body"]) for item in data]

    async def says(self, number: int, *fragments: str, within: float = 10.0, repo: str = "") -> str:
        """The bot's comment on the PR holding every fragment (posted right after the outcome is recorded)."""

        async def find() -> str | None:
            bodies = await self.comments(number, repo)
            return next((body for body in bodies if all(f in body for f in fragments)), None)

        return await eventually(find, within=within, what=f"a comment on #{number} saying {fragments}")


async def make_world(
    sim: SimHandle,
    engine: AsyncEngine,
    tmp_path: Path,
    *,
    strategy: str = "staging",
    extra: dict[str, str] | None = None,
    more_repos: tuple[str, ...] = (),
    clock: Clock | None = None,
    org: str | None = None,
    topics: tuple[str, ...] = (),
) -> AsyncIterator[World]:
    """``org``: the repositories belong to that organisation, created (and so owned) by the bot's user;
    ``topics``: the app repository carries them before the bot starts (for ``topic:`` patterns)."""
    owner = await sim.create_user("owner")
    bot = await sim.create_user("merge-bot")
    alice = await sim.create_user("alice")
    maint = await sim.create_user("maint")
    reader = await sim.create_user("reader")
    if org is not None:
        await sim.create_org(bot, org)
    repo = await sim.create_repo(bot if org else owner, "app", org=org)
    if org is not None:
        await sim.add_collaborator(repo, owner.login, "admin", as_user=bot)
    for topic in topics:
        await sim.api("PUT", f"/repos/{repo}/topics/{topic}", token=owner.token)
    await sim.add_collaborator(repo, bot.login, "admin", as_user=owner)
    await sim.add_collaborator(repo, alice.login, "write", as_user=owner)
    await sim.add_collaborator(repo, maint.login, "write", as_user=owner)
    await sim.add_collaborator(repo, reader.login, "read", as_user=owner)
    await sim.push_commit(repo, owner, "main", {"ci.sh": CI_SCRIPT, "app.txt": "app\n"}, message="Initial")
    await sim.set_ci(repo, "sh ci.sh", context="ci/test")
    repos = [repo]
    for other in more_repos:
        full = await sim.create_repo(bot if org else owner, other, org=org)
        if org is not None:
            await sim.add_collaborator(full, owner.login, "admin", as_user=bot)
        for user, level in ((bot, "admin"), (alice, "write"), (maint, "write"), (reader, "read")):
            await sim.add_collaborator(full, user.login, level, as_user=owner)
        await sim.push_commit(full, owner, "main", {"ci.sh": CI_SCRIPT, "app.txt": "app\n"}, message="Initial")
        await sim.set_ci(full, "sh ci.sh", context="ci/test")
        repos.append(full)
    port = free_port()
    env = {
        "MERGE_BOT_GITEA_URL": sim.url,
        "MERGE_BOT_GITEA_TOKEN": bot.token,
        "MERGE_BOT_WEBHOOK_SECRET": secrets.token_hex(16),
        "MERGE_BOT_LISTEN": f"127.0.0.1:{port}",
        "MERGE_BOT_REPOS": ",".join(repos),
        "MERGE_BOT_DATA_DIR": str(tmp_path / "bot-data"),
        "MERGE_BOT_STRATEGY": strategy,
        "MERGE_BOT_GATE_POLL_SECONDS": "0.5",
        "MERGE_BOT_CI_TIMEOUT_SECONDS": "60",
        "MERGE_BOT_RECONCILE_SECONDS": "1",
        "MERGE_BOT_REAP_SECONDS": "1",
        # These tests follow one PR per candidate; batches have their own (tests/e2e/test_batches.py).
        "MERGE_BOT_BATCH_MAX": "1",
        "MERGE_BOT_MAX_PARALLEL": "1",  # one candidate at a time; chains have their own tests
        "MERGE_BOT_FLAKY_RETRIES": "0",  # a red PR fails at once; re-tests have their own tests
        **(extra or {}),
    }
    settings = load_settings(env)
    runner = web.AppRunner(create_app(settings, engine=engine, clock=clock), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    world = World(sim, repo, owner, bot, alice, maint, reader, engine, settings)
    try:
        hooks = await eventually(lambda: _bot_hooks(world, org), within=30, what="the bot to create its webhook")
        assert len(hooks) == 1
        yield world
    finally:
        await runner.cleanup()


async def _bot_hooks(world: World, org: str | None = None) -> list[dict[str, Any]]:
    """The bot's hooks on the app repository, or (``org``) on its organisation."""
    where = f"/orgs/{org}/hooks" if org else f"/repos/{world.repo}/hooks"
    hooks = await world.sim.api("GET", where, token=world.bot.token if org else world.owner.token)
    return [hook for hook in hooks if hook["config"]["url"] == world.settings.webhook_url]


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[SimHandle]:
    async with running_sim(tmp_path) as handle:
        yield handle


@pytest.fixture
async def world(sim: SimHandle, engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[World]:
    async for world in make_world(sim, engine, tmp_path):
        yield world
