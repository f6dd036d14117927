"""A PR red alone is re-tested (``flaky_retries``) through Gitea Actions' re-run API where the server has one
(newer than 1.25): the failed run is re-run on the same commit and ref, nothing is pushed again. Where it has
none (Gitea 1.25, Forgejo), or the CI is not Gitea Actions, the same candidate goes to a fresh ref instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gitea_sim.testing import SimHandle
from tests.crash.invariants import untested_base_moves
from tests.e2e.conftest import World, make_world
from tests.e2e.test_batches import attempts

pytestmark = pytest.mark.slow

ONE_AT_A_TIME = {
    "MERGE_BOT_BATCH_MAX": "1",
    "MERGE_BOT_BATCH_WAIT_SECONDS": "0",
    "MERGE_BOT_MAX_PARALLEL": "1",
    "MERGE_BOT_FLAKY_RETRIES": "1",
}


def staging_pushes(log: list[dict[str, Any]]) -> list[str]:
    return [
        e["ref"]
        for e in log
        if e["kind"] == "push" and e["ref"].startswith("refs/heads/merge-bot/") and set(e["after"]) != {"0"}
    ]


async def red_once_then_queued(world: World, *, actions: bool) -> int:
    # CI on the bot's candidates only: the PR's own head has no statuses, so it is built and tested.
    await world.sim.set_ci(world.repo, "sh ci.sh", context="ci/test", branches=["merge-bot/**"], actions=actions)
    number = await world.open_pr("shaky", {"shaky.txt": "1\n"})
    await world.sim.fault(kind="ci", action="fail", repo=world.repo, count=1)  # its first run only
    await world.queue(number)
    return number


async def test_a_flaky_red_is_re_run_in_place_through_the_actions_api(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    await sim.features(actions_rerun=True)
    async for world in make_world(sim, engine, tmp_path, extra=ONE_AT_A_TIME):
        number = await red_once_then_queued(world, actions=True)
        entry = await world.final_entry(number, within=60)
        assert entry.state == "merged"

        rows = [row for row, _ in await attempts(world.engine)]
        retried = [row for row in rows if row.reason == "retried"]
        assert len(retried) == 1 and retried[0].reason_detail["outcome"] == "flaky"
        again = next(row for row in rows if row.retry_of == retried[0].id)
        assert (again.candidate_sha, again.ref) == (retried[0].candidate_sha, retried[0].ref)  # same commit, ref
        assert again.state == "done"

        log = await world.sim.log()
        assert staging_pushes(log) == [again.ref]  # pushed once: the re-test was a re-run, not a push
        reruns = [e for e in log if e["kind"] == "actions" and e["action"] == "rerun-failed-jobs"]
        assert [(e["run"], e["attempt"]) for e in reruns] == [(reruns[0]["run"], 2)]
        runs = [e for e in log if e["kind"] == "ci" and e["phase"] == "done"]
        assert [(e["state"], e["attempt"]) for e in runs] == [("failure", 1), ("success", 2)]
        assert untested_base_moves(log, 0, pusher=world.bot.login) == []


async def test_a_red_that_stays_red_on_its_re_run_is_rejected(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    await sim.features(actions_rerun=True)
    async for world in make_world(sim, engine, tmp_path, extra=ONE_AT_A_TIME):
        await world.sim.set_ci(world.repo, "sh ci.sh", context="ci/test", branches=["merge-bot/**"])
        number = await world.open_pr("broken", {"broken.flag": "x\n"})
        await world.queue(number)
        entry = await world.final_entry(number, within=60)
        assert (entry.state, entry.reason) == ("failed", "checks_failed")
        rows = [row for row, _ in await attempts(world.engine)]
        assert [row.reason_detail.get("outcome") for row in rows if row.reason == "retried"] == ["confirmed"]
        log = await world.sim.log()
        assert len(staging_pushes(log)) == 1
        runs = [e for e in log if e["kind"] == "ci" and e["phase"] == "done"]
        assert [(e["state"], e["attempt"]) for e in runs] == [("failure", 1), ("failure", 2)]
        await world.says(number, "Not merged", "ci/test")


@pytest.mark.parametrize("why", ["gitea-1.25", "not-actions"])
async def test_without_a_re_run_api_or_actions_the_candidate_goes_to_a_fresh_ref(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path, why: str
) -> None:
    await sim.features(actions_rerun=why != "gitea-1.25")
    async for world in make_world(sim, engine, tmp_path, extra=ONE_AT_A_TIME):
        number = await red_once_then_queued(world, actions=why != "not-actions")
        entry = await world.final_entry(number, within=60)
        assert entry.state == "merged"
        rows = [row for row, _ in await attempts(world.engine)]
        retried = next(row for row in rows if row.reason == "retried")
        again = next(row for row in rows if row.retry_of == retried.id)
        assert again.candidate_sha == retried.candidate_sha and again.ref != retried.ref
        log = await world.sim.log()
        assert staging_pushes(log) == [retried.ref, again.ref]
        assert not [e for e in log if e["kind"] == "actions"]
