"""A PR from a fork: queued by /merge, tested on a staging branch of the base repository, merged, and the bot
never pushes to the fork, whatever strategy the repository asks for (the fork rule, bot.gate.service.strategy_for)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.models import Attempt
from gitea_sim.testing import SimHandle
from tests.e2e.conftest import make_world


@pytest.mark.parametrize("strategy", ["staging", "pr-branch"])
async def test_fork_pr_is_tested_on_staging_and_merged_without_a_push_to_the_fork(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path, strategy: str
) -> None:
    async for world in make_world(sim, engine, tmp_path, strategy=strategy):
        dana = await sim.create_user("dana")  # an outside contributor: no access to the base repository
        fork = await sim.fork(world.repo, dana)
        head = await sim.push_commit(fork, dana, "feature-a", {"feature-a.flag": "a\n"}, base="main")
        # The base repository has a branch of the same name: the bot must take the PR's head from refs/pull.
        await sim.push_commit(world.repo, world.owner, "feature-a", {"broken.flag": "x\n"}, base="main")
        pr = await sim.create_pr(world.repo, dana, head="dana:feature-a", title="Feature A from a fork")
        number = int(pr["number"])
        assert pr["head"]["repo"]["full_name"] == fork
        since = (await sim.log())[-1]["seq"]

        await world.queue(number)
        entry = await world.final_entry(number)

        assert entry.state == "merged", entry
        main = await world.main_sha()
        assert main == entry.merged_sha
        green = [s for s in await world.statuses(main) if s["context"] == "ci/test"]
        assert green and green[0]["status"] == "success"
        merged = await sim.get_pr(world.repo, number)
        assert merged["merged"] is True
        landed = await sim.api("GET", f"/repos/{world.repo}/commits", params={"sha": main, "limit": "5"})
        assert "feature-a.flag" in {f["filename"] for c in landed for f in c["files"]}
        assert "broken.flag" not in {f["filename"] for c in landed for f in c["files"]}
        async with engine.connect() as connection:
            strategies = (await connection.execute(select(Attempt.strategy))).scalars().all()
        assert strategies and set(strategies) == {"staging"}  # a fork PR always falls back to staging
        await world.says(number, "Merged by the queue", main)

        bot_git = [e for e in await sim.log("git", since=since) if e["user"] == world.bot.login]
        assert bot_git, "the bot talks git to the base repository"
        to_fork = [e for e in bot_git if e["path"].startswith(f"/{fork}.git/")]
        assert [e for e in to_fork if "receive-pack" in e["path"] + e["query"]] == []
        assert [e for e in await sim.log("push", since=since) if e["repo"] == fork] == []
        assert (await sim.api("GET", f"/repos/{fork}/branches/feature-a"))["commit"]["id"] == head
        base_branch = await sim.api("GET", f"/repos/{world.repo}/branches/feature-a")
        assert base_branch["commit"]["id"] != head  # the base repository's namesake branch was left alone
