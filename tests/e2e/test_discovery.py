"""Discovery and many repositories (docs/faults.md #56-#58): ``topic:`` and ``owner/*`` patterns, a repository
found while the bot runs, one that leaves with PRs in line, one organisation hook instead of one per repository,
and reconciler passes whose forge calls do not grow with the repositories that did not change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.models import Attempt, Entry, EntryEvent, Repository, Train
from bot.doctor import examine
from bot.queue.model import ACTIVE_ATTEMPT_STATES, ACTIVE_ENTRY_STATES
from gitea_sim.testing import SimHandle
from tests.e2e.conftest import CI_SCRIPT, World, eventually, make_world

TOPIC = "merge-queue"


@pytest.fixture
async def topic_world(sim: SimHandle, engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[World]:
    extra = {"MERGE_BOT_REPOS": f"topic:{TOPIC}", "MERGE_BOT_DISCOVERY_SECONDS": "1"}
    async for world in make_world(sim, engine, tmp_path, extra=extra, topics=(TOPIC,)):
        yield world


async def new_repository(world: World, name: str, *, topic: str | None = None) -> str:
    full = await world.sim.create_repo(world.owner, name)
    for user, level in ((world.bot, "admin"), (world.alice, "write"), (world.maint, "write")):
        await world.sim.add_collaborator(full, user.login, level, as_user=world.owner)
    await world.sim.push_commit(full, world.owner, "main", {"ci.sh": CI_SCRIPT, "app.txt": "app\n"}, message="Init")
    await world.sim.set_ci(full, "sh ci.sh", context="ci/test")
    if topic is not None:
        await world.sim.api("PUT", f"/repos/{full}/topics/{topic}", token=world.owner.token)
    return full


async def bot_hooks(world: World, repo: str) -> list[dict[str, Any]]:
    hooks = await world.sim.api("GET", f"/repos/{repo}/hooks", token=world.owner.token)
    return [hook for hook in hooks if hook["config"]["url"] == world.settings.webhook_url]


async def active(world: World, repo: str) -> tuple[int, int]:
    """The repository's active entries and attempts."""
    name = repo.split("/")[1]
    trains = select(Train.id).join(Repository, Repository.id == Train.repository_id).where(Repository.name == name)
    async with world.engine.connect() as connection:
        entries = await connection.scalar(
            select(func.count()).select_from(Entry).where(
                Entry.train_id.in_(trains), Entry.state.in_([s.value for s in ACTIVE_ENTRY_STATES])
            )
        )
        attempts = await connection.scalar(
            select(func.count()).select_from(Attempt).where(
                Attempt.train_id.in_(trains), Attempt.state.in_([s.value for s in ACTIVE_ATTEMPT_STATES])
            )
        )
    return int(entries or 0), int(attempts or 0)


async def test_a_repository_given_the_topic_while_the_bot_runs_is_set_up_and_queues(topic_world: World) -> None:
    world = topic_world
    await world.reconciled()
    lib = await new_repository(world, "lib", topic=TOPIC)
    hooks = await eventually(lambda: bot_hooks(world, lib), within=30, what="the bot to set up the new repository")
    assert len(hooks) == 1
    number = await world.open_pr("feature-lib", {"lib.txt": "lib\n"}, repo=lib)
    await world.queue(number, repo=lib)
    entry = await world.final_entry(number, repo=lib)
    assert entry.state == "merged"
    settings = await world.sim.api("GET", f"/repos/{lib}", token=world.owner.token)
    assert settings["allow_manual_merge"]  # its merge style was set up as at start


async def test_a_repository_without_the_topic_is_not_managed(topic_world: World) -> None:
    world = topic_world
    other = await new_repository(world, "other")  # administered by the bot, but no topic
    lib = await new_repository(world, "lib", topic=TOPIC)
    await eventually(lambda: bot_hooks(world, lib), within=30, what="the bot to set up the repository with the topic")
    assert await bot_hooks(world, other) == []
    async with world.engine.connect() as connection:
        names = set((await connection.execute(select(Repository.name).where(Repository.discovered_by.is_not(None))))
                    .scalars())
    assert names == {"app", "lib"}


async def test_a_repository_that_loses_the_topic_has_its_queue_cancelled_with_the_reason(topic_world: World) -> None:
    world = topic_world
    await world.sim.set_ci(world.repo, "sh ci.sh", context="ci/test", delay_s=30.0)  # the first stays under test
    first = await world.open_pr("feature-a", {"a.txt": "a\n"})
    second = await world.open_pr("feature-c", {"c.txt": "c\n"})
    await world.queue(first)
    await world.in_state(first, "testing")
    await world.queue(second)
    await world.in_state(second, "queued")
    await world.sim.api("DELETE", f"/repos/{world.repo}/topics/{TOPIC}", token=world.owner.token)

    for number in (first, second):
        entry = await world.final_entry(number, within=60)
        assert (entry.state, entry.reason) == ("cancelled", "repository_unmanaged")
        assert entry.reason_detail["why"] == "topic_removed"
        await world.says(number, "no longer manages this repository", "topic")
    assert await active(world, world.repo) == (0, 0)  # nothing left active: no entry, no attempt
    async with world.engine.connect() as connection:
        reasons = (
            await connection.execute(select(EntryEvent.reason).where(EntryEvent.kind == "cancelled"))
        ).scalars().all()
        repository = (await connection.execute(select(Repository).where(Repository.name == "app"))).one()
    assert sorted(reasons) == ["repository_unmanaged", "repository_unmanaged"]  # in the audit log
    assert (repository.unmanaged_reason, repository.unmanaged_at is not None) == ("topic_removed", True)
    staging = [b["name"] for b in await world.sim.api("GET", f"/repos/{world.repo}/branches")
               if b["name"].startswith("merge-bot/")]
    assert staging == []  # the abandoned candidate's branch went with it

    # Nothing new is taken from it: its webhooks are answered "not managed" and dropped.
    since = max((e["seq"] for e in await world.sim.log()), default=0)
    third = await world.open_pr("feature-d", {"d.txt": "d\n"})
    await world.queue(third)

    async def comment_answered() -> list[dict[str, Any]]:
        return [e for e in await world.sim.log("delivery", since=since)
                if e["event_type"] == "pull_request_comment" and e["status"] is not None]

    answered = await eventually(comment_answered, within=30, what="the /merge comment's delivery")
    assert [e["status"] for e in answered] == [200]  # ignored, not stored (202)
    assert await world.entry(third) is None


async def test_an_organisation_pattern_uses_one_organisation_hook(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    extra = {"MERGE_BOT_REPOS": "acme/*"}
    async for world in make_world(sim, engine, tmp_path, extra=extra, org="acme", more_repos=("lib",)):
        org_hooks = await sim.api("GET", "/orgs/acme/hooks", token=world.bot.token)
        assert [h["config"]["url"] for h in org_hooks] == [world.settings.webhook_url]
        await world.reconciled()
        for repo in ("acme/app", "acme/lib"):
            assert await bot_hooks(world, repo) == [], f"{repo} has a hook of its own"
        number = await world.open_pr("feature-a", {"a.txt": "a\n"})
        await world.queue(number)
        entry = await world.final_entry(number)
        assert entry.state == "merged"
        deliveries = [e for e in await sim.log("delivery") if e.get("hook_id") == org_hooks[0]["id"]]
        assert deliveries, "the events came through the organisation's hook"
        async with aiohttp.ClientSession() as http:
            findings = await examine(world.settings, None, http, wait_seconds=0.1)
        webhook = [f for f in findings if f.check == "webhook" and f.subject == "acme/app"]
        assert [(f.ok, "organisation hook" in f.text) for f in webhook] == [(True, True)]
        discovered = [f for f in findings if f.check == "discovery"]
        assert [f.ok for f in discovered] == [True] and "2 repositories" in discovered[0].text


async def test_a_pass_with_nothing_changed_makes_few_forge_calls(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    """Thirty idle repositories (seeded, three open PRs each) next to the app: once every repository had its
    first pass, each reconciler pass makes a handful of calls (the change feed, the updated-sorted listing, now
    and then the full listing), counted from the simulator's request log between passes' feed reads."""
    seeded = 30
    # Seeded as history (an hour old), the repositories are found by a full listing, not by the recent one.
    extra = {"MERGE_BOT_REPOS": "owner/*", "MERGE_BOT_DISCOVERY_SECONDS": "3"}
    async for world in make_world(sim, engine, tmp_path, extra=extra):
        await sim.sim_api("POST", "/_sim/seed", json={
            "owner": "owner", "repos": seeded, "pulls": 3, "collaborators": {"merge-bot": "admin"},
        })

        async def all_reconciled() -> bool:
            async with engine.connect() as connection:
                done = await connection.scalar(
                    select(func.count()).select_from(Repository).where(Repository.reconciled_at.is_not(None))
                )
            return int(done or 0) == seeded + 1

        await eventually(all_reconciled, within=90, what="a first pass over every repository")
        start = max((e["seq"] for e in await sim.log()), default=0)
        bot = world.bot.login

        async def passes(start: int = start, bot: str = bot) -> list[dict[str, Any]] | None:
            calls = [e for e in await sim.log("api", since=start) if e.get("user") == bot]
            feeds = [i for i, e in enumerate(calls) if e["path"].startswith("/api/v1/repos/issues/search")]
            return calls[feeds[1]:feeds[-1]] if len(feeds) >= 5 else None

        window = await eventually(passes, within=60, what="four quiet reconciler passes")
        rounds = sum(1 for e in window if e["path"].startswith("/api/v1/repos/issues/search"))
        per_pass = len(window) / rounds
        assert per_pass <= 4, f"{per_pass} calls per idle pass: {[e['path'] for e in window][:20]}"
        assert per_pass * 5 < seeded  # not proportional to the repositories: far below one call each


async def test_a_failing_listing_never_shrinks_the_managed_set(topic_world: World) -> None:
    """docs/faults.md #57: every repository search fails (500) for a while; discovery keeps what it manages,
    and the queue goes on."""
    world = topic_world
    await world.reconciled()
    fault = await world.sim.fault(kind="http", method="GET", path="/api/v1/repos/search", status=500, count=-1)
    since = max((e["seq"] for e in await world.sim.log()), default=0)

    async def refused_listings() -> bool:
        hits = [e for e in await world.sim.log("api", since=since)
                if e["path"] == "/api/v1/repos/search" and e.get("fault") == fault["id"]]
        return len(hits) >= 10  # a few full listings' worth of retries (MERGE_BOT_DISCOVERY_SECONDS=1)

    await eventually(refused_listings, within=60, what="discovery to meet the failing listing")
    async with world.engine.connect() as connection:
        repository = (await connection.execute(select(Repository).where(Repository.name == "app"))).one()
    assert (repository.discovered_by, repository.unmanaged_at) == (f"topic:{TOPIC}", None)
    number = await world.open_pr("feature-a", {"a.txt": "a\n"})
    await world.queue(number)
    assert (await world.final_entry(number)).state == "merged"


async def test_a_repository_whose_admin_right_is_taken_away_is_wound_down(topic_world: World) -> None:
    """docs/faults.md #58: the bot's user is made a mere writer of the repository while a PR is under test:
    the next full listing shows it without admin; its entry is cancelled, told on the PR."""
    world = topic_world
    await world.sim.set_ci(world.repo, "sh ci.sh", context="ci/test", delay_s=30.0)
    number = await world.open_pr("feature-a", {"a.txt": "a\n"})
    await world.queue(number)
    await world.in_state(number, "testing")
    await world.sim.add_collaborator(world.repo, world.bot.login, "write", as_user=world.owner)
    entry = await world.final_entry(number, within=60)
    assert (entry.state, entry.reason) == ("cancelled", "repository_unmanaged")
    assert entry.reason_detail["why"] == "admin_lost"
    await world.says(number, "no longer an admin")
    assert await active(world, world.repo) == (0, 0)
