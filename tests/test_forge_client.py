"""The forge client's reads of files, topics and repository lists, its organisation hooks and test
deliveries, against the simulator (real git, real HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.forge.client import GiteaClient
from bot.forge.errors import Forbidden
from gitea_sim.testing import SimHandle, SimUser, free_port, running_sim


@dataclass
class Scene:
    sim: SimHandle
    owner: SimUser
    repo: str
    forge: GiteaClient
    http: aiohttp.ClientSession


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[Scene]:
    async with running_sim(tmp_path) as sim, aiohttp.ClientSession() as http:
        owner = await sim.create_user("owner")
        repo = await sim.create_repo(owner, "app")
        yield Scene(sim, owner, repo, GiteaClient(http, sim.url, SecretStr(owner.token), backoff=0.01), http)


async def test_read_file_at_a_ref(scene: Scene) -> None:
    owner, name = scene.repo.split("/")
    first = await scene.sim.push_commit(scene.repo, scene.owner, "main", {"conf/bot.toml": "batch_max = 2\n"})
    await scene.sim.push_commit(scene.repo, scene.owner, "main", {"conf/bot.toml": "batch_max = 3\n"})
    assert await scene.forge.read_file(owner, name, "conf/bot.toml", "main") == b"batch_max = 3\n"
    assert await scene.forge.read_file(owner, name, "conf/bot.toml", first) == b"batch_max = 2\n"
    assert await scene.forge.read_file(owner, name, "conf/missing.toml", "main") is None
    assert await scene.forge.read_file(owner, name, "conf/bot.toml", "no-such-branch") is None
    assert await scene.forge.read_file(owner, name, "conf", "main") is None  # a directory is no file


async def test_topics_search_and_owner_repositories(scene: Scene) -> None:
    owner, name = scene.repo.split("/")
    other = await scene.sim.create_repo(scene.owner, "lib")
    await scene.sim.create_repo(scene.owner, "docs")
    for repo in (scene.repo, other):
        await scene.sim.api("PUT", f"/repos/{repo}/topics", json={"topics": ["merge-queue"]})
    await scene.sim.api("PUT", f"/repos/{other}/topics/python")
    assert await scene.forge.list_topics(owner, name) == ["merge-queue"]
    assert sorted(await scene.forge.search_repos_by_topic("merge-queue")) == [scene.repo, other]
    assert await scene.forge.search_repos_by_topic("merge") == []  # exact topics only
    assert await scene.forge.owner_repos(owner) == [scene.repo, other, "owner/docs"]


async def test_org_hook_lifecycle_and_a_test_delivery(scene: Scene) -> None:
    received: list[dict[str, str]] = []
    arrived = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        received.append(dict(request.headers))
        arrived.set()
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/webhook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        org = await scene.sim.create_org(scene.owner, "acme")
        url = f"http://127.0.0.1:{port}/webhook"
        hook = await scene.forge.create_org_hook(org, url, SecretStr("s3"), ("push", "status"))
        await scene.forge.edit_org_hook(org, hook.id, SecretStr("s4"), ("push",))
        assert [(h.id, h.url, h.events, h.active) for h in await scene.forge.list_org_hooks(org)] == [
            (hook.id, url, ("push",), True)
        ]
        await scene.forge.delete_org_hook(org, hook.id)
        assert await scene.forge.list_org_hooks(org) == []

        owner, name = scene.repo.split("/")
        repo_hook = await scene.forge.create_hook(owner, name, url, SecretStr("s5"), ("push",))
        await scene.forge.test_hook(owner, name, repo_hook.id)
        await asyncio.wait_for(arrived.wait(), 10)
        assert received[0]["X-Gitea-Event"] == "push"
    finally:
        await runner.cleanup()


async def test_branch_reports_the_protection_in_effect_for_the_token_user(scene: Scene) -> None:
    owner, name = scene.repo.split("/")
    await scene.sim.protect(scene.repo, "ma*", enable_status_check=True, status_check_contexts=["merge-bot"],
                            enable_push=True, enable_push_whitelist=True, push_whitelist_usernames=[])
    branch = await scene.forge.branch(owner, name, "main")
    assert branch is not None
    assert (branch.protected, branch.rule, branch.status_checks, branch.contexts, branch.user_can_push) == (
        True, "ma*", True, ("merge-bot",), False)
    assert await scene.forge.branch(owner, name, "nope") is None


async def test_delete_comment_of_nothing_and_a_scope_refusal(scene: Scene) -> None:
    owner, name = scene.repo.split("/")
    assert await scene.forge.delete_comment(owner, name, 0) is False
    status, data, _ = await scene.sim.request("POST", "/api/v1/users/owner/tokens",
                                              basic=("owner", scene.owner.password),
                                              json={"name": "narrow", "scopes": ["read:repository"]})
    assert status == 201
    narrow = GiteaClient(scene.http, scene.sim.url, SecretStr(data["sha1"]))
    with pytest.raises(Forbidden, match="required=\\[write:issue\\]"):
        await narrow.delete_comment(owner, name, 0)
