"""Repositories' own merge-bot files end to end: the bot, the simulator with real git and CI, PostgreSQL.

Two repositories with different files get different merge methods and batch sizes; a bad file pushed to the
branch keeps the last good rules in force, gets a failing ``merge-bot/config`` status on its commit and shows
on the queue page; a PR bringing a bad file fails with ``bad_config``, and a PR fixing it lands by the rules
already on the branch."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.models import Attempt, AttemptEntry, Notification, Repository, Train
from gitea_sim.testing import SimHandle
from tests.e2e.conftest import World, eventually, make_world

pytestmark = pytest.mark.slow

APP_FILE = """# the app batches two PRs and squashes them
merge_method = "squash"
batch_max = 2
batch_wait_seconds = 30
squash_message = "{title} (#{number})\\n\\nApproved-by: {approved_by}"
"""
LIB_FILE = """merge_method = "merge"
allowed_methods = ["merge"]
batch_max = 1
queue_label = "ship-it"
priority_ceiling = 0
"""


async def batch_sizes(engine: AsyncEngine, name: str) -> list[int]:
    """How many entries each attempt of repository ``name`` carried, in order."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(Attempt.id, func.count(AttemptEntry.entry_id))
            .join(AttemptEntry, AttemptEntry.attempt_id == Attempt.id)
            .join(Train, Train.id == Attempt.train_id)
            .join(Repository, Repository.id == Train.repository_id)
            .where(Repository.name == name)
            .group_by(Attempt.id)
            .order_by(Attempt.id)
        )
        return [int(count) for _, count in rows]


async def commit_of(world: World, repo: str, sha: str) -> tuple[str, int]:
    """A commit's message and number of parents, read from the simulator's repository itself."""
    owner, name = repo.split("/")
    found = world.sim.sim.state.repo_by_name(owner, name)
    assert found is not None
    git = world.sim.sim.git(found)
    message = await git.git("log", "-1", "--format=%B", sha)
    parents = (await git.git("log", "-1", "--format=%P", sha)).split()
    return message.strip(), len(parents)


async def test_two_repositories_with_their_own_files_get_their_own_methods_and_batches(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    async for world in make_world(sim, engine, tmp_path, more_repos=("lib",)):
        lib = f"{world.owner.login}/lib"
        await sim.push_commit(world.repo, world.owner, "main", {".gitea/merge-bot.toml": APP_FILE}, message="Rules")
        await sim.push_commit(lib, world.owner, "main", {".merge-bot.toml": LIB_FILE}, message="Rules")
        apps = [await world.open_pr(f"app-{n}", {f"app-{n}.txt": f"{n}\n"}) for n in range(2)]
        libs = [await world.open_pr(f"lib-{n}", {f"lib-{n}.txt": f"{n}\n"}, repo=lib) for n in range(2)]
        for number in apps:
            await world.queue(number)
        # The lib's own rules for commands: its methods, its priority ceiling, its label.
        await world.queue(libs[0], "/merge method=squash", repo=lib)
        await world.says(libs[0], "`method=squash` is not allowed for `main`", "allowed: `merge`", repo=lib)
        await world.queue(libs[0], "/merge p=3", repo=lib)
        await world.says(libs[0], "above 0", repo=lib)
        await world.queue(libs[0], repo=lib)
        await sim.create_label(lib, "ship-it")
        await sim.api(
            "POST", f"/repos/{lib}/issues/{libs[1]}/labels", token=world.maint.token, json={"labels": ["ship-it"]}
        )

        merged_apps = [await world.final_entry(number, within=90) for number in apps]
        merged_libs = [await world.final_entry(number, within=90, repo=lib) for number in libs]

        assert [e.state for e in merged_apps + merged_libs] == ["merged"] * 4
        assert [e.merge_method for e in merged_apps] == ["squash", "squash"]  # the app's default method
        assert [e.merge_method for e in merged_libs] == ["merge", "merge"]  # the lib's
        assert [e.trigger for e in merged_libs] == ["comment", "label"]  # its own queue label queued the second
        assert await batch_sizes(engine, "app") == [2]  # both app PRs in one candidate
        assert await batch_sizes(engine, "lib") == [1, 1]  # the lib tests one at a time
        message, parents = await commit_of(world, world.repo, merged_apps[0].merged_sha)
        assert (message, parents) == (f"PR app-0 (#{apps[0]})\n\nApproved-by: {world.maint.login}", 1)
        _, parents = await commit_of(world, lib, merged_libs[0].merged_sha)
        assert parents == 2  # a merge commit
        await world.says(apps[0], "method: squash")


async def queue_page(world: World) -> str:
    url = f"http://{world.settings.listen}/queue/{world.repo}"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        return await response.text()


async def config_problem(world: World) -> str | None:
    async with world.engine.connect() as connection:
        found: str | None = await connection.scalar(select(Train.config_problem).where(Train.branch == "main"))
    return found


async def no_problem(world: World) -> bool:
    return await config_problem(world) is None


async def test_a_bad_file_keeps_the_last_good_rules_and_a_pr_bringing_one_is_refused(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    # Notifications go to a port nobody listens on: what matters here is what the outbox was given.
    notify = {"MERGE_BOT_NOTIFY_URLS": "json://127.0.0.1:9/merge-bot"}
    async for world in make_world(sim, engine, tmp_path, extra=notify):
        good = 'merge_method = "squash"\n'
        await sim.push_commit(world.repo, world.owner, "main", {".gitea/merge-bot.toml": good}, message="Rules")
        bad = await sim.push_commit(
            world.repo,
            world.owner,
            "main",
            {".gitea/merge-bot.toml": good + 'batch_max = "lots"\n'},
            message="Break the rules",
        )
        await sim.push_commit(world.repo, world.owner, "main", {"notes.txt": "later\n"}, message="Unrelated")

        first = await world.open_pr("first", {"first.txt": "1\n"})
        await world.queue(first)
        entry = await world.final_entry(first, within=60)
        assert (entry.state, entry.merge_method) == ("merged", "squash")  # the last good file still rules

        statuses: list[dict[str, Any]] = await world.statuses(bad)
        config = [s for s in statuses if s["context"] == "merge-bot/config"]
        assert len(config) == 1 and config[0]["status"] == "failure"
        assert config[0]["description"].startswith(
            ".gitea/merge-bot.toml:2: batch_max: Input should be a valid integer"
        )
        problem = await eventually(partial(config_problem, world), within=10, what="the train to record the problem")
        assert problem.startswith(".gitea/merge-bot.toml:2: batch_max")
        assert f"brought by {bad[:10]}" in problem
        assert "The merge-bot file cannot be used" in await queue_page(world)
        async with world.engine.connect() as connection:
            told = (
                await connection.execute(select(Notification.body).where(Notification.kind == "config_broken"))
            ).all()
        assert len(told) == 1 and "batch_max" in told[0].body  # told once, however often the gate looks

        broken = await world.open_pr("broken", {".gitea/merge-bot.toml": "batch_maxx = 2\n"})
        await world.queue(broken)
        refused = await world.final_entry(broken, within=60)
        assert (refused.state, refused.reason) == ("failed", "bad_config")
        await world.says(broken, "the file it brings cannot be used", ":1: unknown key 'batch_maxx'")

        fixed = await world.open_pr("fix", {".gitea/merge-bot.toml": 'merge_method = "merge"\n'})
        await world.queue(fixed)
        landed = await world.final_entry(fixed, within=60)
        assert (landed.state, landed.merge_method) == ("merged", "squash")  # judged by the rules on main

        third = await world.open_pr("third", {"third.txt": "3\n"})
        await world.queue(third)
        assert (await world.final_entry(third, within=60)).merge_method == "merge"  # the new file rules now

        await eventually(partial(no_problem, world), within=20, what="the problem to clear once the fix landed")
