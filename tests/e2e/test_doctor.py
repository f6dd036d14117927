"""``merge-bot doctor`` against the simulator and the running bot: a healthy setup passes every check, and
each deliberately broken part of a setup is found and named, and only that part."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import doctor
from bot.config import Settings
from bot.doctor import Finding
from gitea_sim.testing import SimHandle

from .conftest import World, make_world

HEALTHY_PROTECTION = {
    "enable_status_check": True,
    "status_check_contexts": ["merge-bot"],
    "enable_push": True,
    "push_whitelist_usernames": ["merge-bot"],
}


@pytest.fixture
async def ready(world: World) -> World:
    """A world set up as docs/setup-gitea.md says: on top of what the bot sets up itself (webhook, merge
    style), main requires the merge-bot status and lets the bot push."""
    await world.sim.protect(world.repo, "main", **HEALTHY_PROTECTION)
    return world


async def examine(world: World, database_url: str, *, wait: float = 3.0, **changes: object) -> list[Finding]:
    settings: Settings = world.settings.model_copy(update=changes) if changes else world.settings
    async with aiohttp.ClientSession() as http:
        return await doctor.examine(settings, database_url, http, wait_seconds=wait)


def failing(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.ok is False]


def only_failure(findings: list[Finding], check: str) -> Finding:
    bad = failing(findings)
    assert [f.check for f in bad] == [check], "\n".join(f.line() for f in findings)
    return bad[0]


async def test_a_healthy_setup_passes_every_check(ready: World, database_url: str) -> None:
    number = await ready.open_pr("feature-a", {"feature-a.flag": "a\n"})
    # main moves on, so the PR is built onto it as a candidate on merge-bot/** (not landed as it is)
    await ready.sim.push_commit(ready.repo, ready.owner, "main", {"later.txt": "later\n"}, message="Later")
    await ready.queue(number)
    assert (await ready.final_entry(number)).state == "merged"

    out = io.StringIO()

    @asynccontextmanager
    async def database(settings: Settings) -> AsyncIterator[str]:
        yield database_url

    code = await doctor.main(ready.settings, database, wait_seconds=15, out=out)
    lines = out.getvalue().splitlines()
    assert code == 0, out.getvalue()
    checks = [line.split(":")[0].split()[1] for line in lines]
    assert checks == ["token", "scopes", "admin", "webhook", "delivery", "protection", "merge", "ci"]
    assert all(line.startswith("ok ") for line in lines), out.getvalue()
    assert "a test delivery of hook" in out.getvalue() and "CI reported ci/test on merge-bot/main/" in out.getvalue()


async def test_an_invalid_token(ready: World, database_url: str) -> None:
    findings = await examine(ready, database_url, gitea_token=SecretStr("not-a-token"))
    assert [f.check for f in findings] == ["token"]
    assert findings[0].ok is False and "refuses the token (401)" in findings[0].text


async def test_a_token_without_a_scope_the_bot_uses(ready: World, database_url: str) -> None:
    status, data, _ = await ready.sim.request(
        "POST", "/api/v1/users/merge-bot/tokens", basic=("merge-bot", ready.bot.password),
        json={"name": "narrow", "scopes": ["read:user", "write:repository"]},
    )
    assert status == 201
    found = only_failure(await examine(ready, database_url, gitea_token=SecretStr(data["sha1"])), "scopes")
    assert found.text.startswith("the token lacks write:issue (it has: read:user,write:repository)")


async def test_the_bot_is_not_admin_of_a_repository(ready: World, database_url: str) -> None:
    await ready.sim.add_collaborator(ready.repo, "merge-bot", "write", as_user=ready.owner)
    findings = await examine(ready, database_url)
    admin = next(f for f in findings if f.check == "admin")
    assert admin.ok is False and "merge-bot has write access" in admin.text
    assert {f.check for f in failing(findings)} <= {"admin", "webhook", "delivery"}  # hooks are admin-only


async def test_no_webhook_points_at_the_bot(ready: World, database_url: str) -> None:
    for hook in await ready.sim.api("GET", f"/repos/{ready.repo}/hooks", token=ready.owner.token):
        await ready.sim.api("DELETE", f"/repos/{ready.repo}/hooks/{hook['id']}", token=ready.owner.token)
    findings = await examine(ready, database_url)
    webhook = next(f for f in findings if f.check == "webhook")
    assert webhook.ok is False and f"no webhook points at {ready.settings.webhook_url}" in webhook.text
    assert [f.check for f in failing(findings)] == ["webhook", "delivery"]


async def test_the_webhook_lacks_events(ready: World, database_url: str) -> None:
    hook = await bot_hook(ready)
    await ready.sim.api("PATCH", f"/repos/{ready.repo}/hooks/{hook}", token=ready.owner.token,
                        json={"events": ["push"]})
    found = only_failure(await examine(ready, database_url), "webhook")
    assert f"hook {hook} does not send pull_request, issue_comment, status" in found.text


async def test_the_webhook_is_inactive(ready: World, database_url: str) -> None:
    hook = await bot_hook(ready)
    await ready.sim.api("PATCH", f"/repos/{ready.repo}/hooks/{hook}", token=ready.owner.token,
                        json={"active": False})
    findings = await examine(ready, database_url)
    assert [f.check for f in failing(findings)] == ["webhook", "delivery"]
    assert f"hook {hook} is inactive" in failing(findings)[0].text


async def test_deliveries_signed_with_another_secret_never_reach_the_bot(ready: World, database_url: str) -> None:
    hook = await bot_hook(ready)
    await ready.sim.api("PATCH", f"/repos/{ready.repo}/hooks/{hook}", token=ready.owner.token,
                        json={"config": {"secret": "not-the-bots-secret"}})
    found = only_failure(await examine(ready, database_url, wait=2.0), "delivery")
    assert f"no test delivery of hook {hook} reached the bot within 2 s" in found.text
    assert "ALLOWED_HOST_LIST" in found.text


async def test_a_bot_that_does_not_run_is_named(ready: World, database_url: str) -> None:
    """The bot's webhook URL pointing where nothing listens: the test delivery is lost, and doctor says the bot
    does not answer from where doctor runs either."""
    elsewhere = ready.settings.model_copy(update={"external_url": "http://127.0.0.1:9"})
    hook = await bot_hook(ready)
    await ready.sim.api("PATCH", f"/repos/{ready.repo}/hooks/{hook}", token=ready.owner.token,
                        json={"config": {"url": elsewhere.webhook_url}})
    async with aiohttp.ClientSession() as http:
        findings = await doctor.examine(elsewhere, database_url, http, wait_seconds=1.0)
    found = only_failure(findings, "delivery")
    assert "nothing answers at http://127.0.0.1:9/healthz from here either" in found.text


async def test_the_target_branch_does_not_require_the_bots_status(world: World, database_url: str) -> None:
    await world.sim.protect(world.repo, "main", enable_push=True, push_whitelist_usernames=["merge-bot"])
    found = only_failure(await examine(world, database_url), "protection")
    assert found.subject == f"{world.repo} main"
    assert found.text == "make merge-bot a required status check of rule 'main'"


async def test_the_bot_may_not_push_to_the_target_branch(world: World, database_url: str) -> None:
    await world.sim.protect(world.repo, "main", enable_status_check=True, status_check_contexts=["merge-*"],
                            enable_push=True, enable_push_whitelist=True, push_whitelist_usernames=["owner"])
    found = only_failure(await examine(world, database_url), "protection")
    assert found.text.startswith("let merge-bot push to main (rule 'main': push allowlist)")


async def test_an_unprotected_target_branch(world: World, database_url: str) -> None:
    found = only_failure(await examine(world, database_url), "protection")
    assert found.text.startswith("main is not protected")


async def test_the_merge_style_the_strategy_needs_is_off(ready: World, database_url: str) -> None:
    await ready.sim.api("PATCH", f"/repos/{ready.repo}", token=ready.owner.token, json={"allow_manual_merge": False})
    found = only_failure(await examine(ready, database_url), "merge style")
    assert found.text.startswith("allow_manual_merge is off")


async def test_ci_that_never_runs_on_candidates(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path, database_url: str
) -> None:
    async for world in make_world(sim, engine, tmp_path, extra={"MERGE_BOT_CI_TIMEOUT_SECONDS": "2"}):
        await sim.protect(world.repo, "main", **HEALTHY_PROTECTION)
        await sim.set_ci(world.repo, "sh ci.sh", context="ci/test", branches=["main"])  # not merge-bot/**
        number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
        await world.queue(number)
        assert (await world.final_entry(number)).state == "failed"
        found = only_failure(await examine(world, database_url), "ci")
        assert "CI never reported a status on the last 1 candidates (merge-bot/main/" in found.text
        assert "make CI run on pushes to merge-bot/** branches" in found.text


async def bot_hook(world: World) -> int:
    hooks = await world.sim.api("GET", f"/repos/{world.repo}/hooks", token=world.owner.token)
    return int(next(h["id"] for h in hooks if h["config"]["url"] == world.settings.webhook_url))
