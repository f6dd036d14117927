"""The gate against the forge's surprises (docs/faults.md #3, #9-#11, #15, #16), both strategies x all methods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.models import Attempt
from gitea_sim.testing import SimHandle
from tests.e2e.conftest import World, make_world

pytestmark = pytest.mark.slow


async def parents(world: World, sha: str) -> list[str]:
    data = await world.sim.api("GET", f"/repos/{world.repo}/git/commits/{sha}")
    return [parent["sha"] for parent in data["parents"]]


async def ci_state(world: World, sha: str) -> str | None:
    """ "success" when CI reported success on this very SHA (CI may be running again since the base moved
    there, so the newest status can be a new "pending")."""
    states = [str(status["status"]) for status in await world.statuses(sha) if status["context"] == "ci/test"]
    return "success" if "success" in states else (states[0] if states else None)


async def attempts(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as connection:
        return list((await connection.execute(select(Attempt.__table__).order_by(Attempt.id))).all())


@pytest.mark.parametrize("strategy", ["staging", "pr-branch"])
@pytest.mark.parametrize("method", ["rebase", "merge", "squash"])
async def test_strategy_and_method_land_the_tested_commit(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path, strategy: str, method: str
) -> None:
    async for world in make_world(sim, engine, tmp_path, strategy=strategy):
        number = await world.open_pr("feature-a", {"feature-a.flag": "a\n", "more.txt": "x\n"})
        # The base moves after the PR branched, so the candidate is a new commit CI has never seen.
        old_main = await sim.push_commit(world.repo, world.owner, "main", {"other.txt": "o\n"}, message="Other")
        await world.queue(number, f"/merge method={method}")
        entry = await world.final_entry(number)
        assert entry.state == "merged", entry
        main = await world.main_sha()
        assert main == entry.merged_sha
        assert await ci_state(world, main) == "success"  # green on that very SHA
        pr = await sim.get_pr(world.repo, number)
        assert pr["merged"] is True
        if strategy == "pr-branch":
            assert pr["head"]["sha"] == main
        if method == "merge":
            assert (await parents(world, main))[0] == old_main
            assert len(await parents(world, main)) == 2
        elif method == "squash":
            assert await parents(world, main) == [old_main]
        else:
            assert (await parents(world, (await parents(world, main))[0])) == [old_main] or old_main in await parents(
                world, main
            )


async def test_force_push_during_the_test_cancels_the_entry(world: World) -> None:
    # The candidate's CI run is held back (no status until released), so the push comes while it is under test
    # however slow the machine; CI runs on the candidates only, so the held run is the candidate's.
    await world.sim.set_ci(world.repo, "sh ci.sh", context="ci/test", delay_s=0.5, branches=["merge-bot/**"])
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    before = await world.main_sha()
    await world.sim.fault(kind="ci", action="silent", repo=world.repo, count=1)
    await world.queue(number)
    await world.in_state(number, "testing")
    await world.sim.push_commit(world.repo, world.alice, "feature-a", {"late.txt": "late\n"}, message="Late")
    entry = await world.final_entry(number)
    assert (entry.state, entry.reason) == ("cancelled", "head_changed")
    assert await world.main_sha() == before
    await world.says(number, "new commits")


async def test_base_moved_during_the_test_rebuilds_and_retests(world: World) -> None:
    await world.sim.set_ci(world.repo, "sh ci.sh", context="ci/test", delay_s=1.5)
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await world.queue(number)
    await world.in_state(number, "testing")
    human = await world.sim.push_commit(world.repo, world.owner, "main", {"human.txt": "h\n"}, message="Human")
    entry = await world.final_entry(number)
    assert entry.state == "merged"
    main = await world.main_sha()
    assert main == entry.merged_sha
    assert await parents(world, main) == [human]
    assert await ci_state(world, main) == "success"
    reasons = [a.reason for a in await attempts(world.engine)]
    assert reasons[0] == "base_moved" and reasons[-1] is None


async def test_pr_closed_during_the_test_aborts_cleanly(world: World) -> None:
    await world.sim.set_ci(world.repo, "sh ci.sh", context="ci/test", delay_s=1.5)
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    before = await world.main_sha()
    await world.queue(number)
    await world.in_state(number, "testing")
    await world.sim.api(
        "PATCH", f"/repos/{world.repo}/pulls/{number}", token=world.alice.token, json={"state": "closed"}
    )
    entry = await world.final_entry(number)
    assert (entry.state, entry.reason) == ("cancelled", "pr_closed")
    assert await world.main_sha() == before


async def test_conflict_fails_with_the_paths_and_the_queue_moves_on(world: World) -> None:
    conflicting = await world.open_pr("conflicting", {"app.txt": "theirs\n"})
    await world.sim.push_commit(world.repo, world.owner, "main", {"app.txt": "ours\n"}, message="Ours")
    fine = await world.open_pr("fine", {"feature-a.flag": "a\n"})
    await world.queue(conflicting)
    await world.queue(fine)
    entry = await world.final_entry(conflicting)
    assert (entry.state, entry.reason) == ("failed", "conflict")
    assert entry.reason_detail["paths"] == ["app.txt"]
    assert (await world.final_entry(fine)).state == "merged"
    await world.says(conflicting, "conflicts", "app.txt")


async def test_ci_that_never_reports_times_out(sim: SimHandle, engine: AsyncEngine, tmp_path: Path) -> None:
    async for world in make_world(sim, engine, tmp_path, extra={"MERGE_BOT_CI_TIMEOUT_SECONDS": "3"}):
        number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
        await sim.push_commit(world.repo, world.owner, "main", {"other.txt": "o\n"}, message="Other")
        before = await world.main_sha()
        await sim.fault(kind="ci", action="silent", count=-1)
        await world.queue(number)
        entry = await world.final_entry(number)
        assert (entry.state, entry.reason) == ("failed", "ci_timeout")
        assert await world.main_sha() == before


async def test_merge_call_that_fails_after_merging_counts_once(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    async for world in make_world(sim, engine, tmp_path, strategy="pr-branch"):
        number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
        await sim.fault(
            kind="http",
            method="POST",
            path=f"/api/v1/repos/{world.repo}/pulls/*/merge",
            status=500,
            when="after",
            count=1,
        )
        await world.queue(number)
        entry = await world.final_entry(number)
        assert entry.state == "merged"
        assert await world.main_sha() == entry.merged_sha
        merges = [e for e in await sim.log("api") if e.get("method") == "POST" and e["path"].endswith("/merge")]
        assert len(merges) == 1  # re-read, not retried blindly
