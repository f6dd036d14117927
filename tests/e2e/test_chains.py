"""Speculative chains end to end: several candidates under CI at once, each built on the one before; a culprit in
the middle is rejected alone, a flaky red is re-tested and lands, and main holds only SHAs that were green on
themselves. The bot, the simulator with real git and CI, and PostgreSQL, as in the other end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.models import Train
from gitea_sim.testing import SimHandle
from tests.crash.invariants import untested_base_moves
from tests.e2e.conftest import make_world
from tests.e2e.test_batches import attempts, files_at, git_log

pytestmark = pytest.mark.slow

CHAINS = {
    "MERGE_BOT_BATCH_MAX": "1",  # one PR per candidate: the chain is what runs them side by side
    "MERGE_BOT_BATCH_WAIT_SECONDS": "0",
    "MERGE_BOT_MAX_PARALLEL": "4",
    "MERGE_BOT_WINDOW_FLOOR": "2",
    "MERGE_BOT_FLAKY_RETRIES": "1",
}


async def test_twelve_prs_a_culprit_in_the_middle_and_a_flaky_one(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    async for world in make_world(sim, engine, tmp_path, extra=CHAINS):
        changes = [{f"part-{n}.txt": f"{n}\n"} for n in range(12)]
        changes[6]["broken.flag"] = "x\n"  # red alone, whatever is before it
        numbers = [await world.open_pr(f"part-{n}", change) for n, change in enumerate(changes)]
        culprit = numbers[6]
        # CI runs on the bot's candidates only, and takes a moment, so that a chain builds up behind the first.
        await world.sim.set_ci(world.repo, "sh ci.sh", context="ci/test", delay_s=1.0, branches=["merge-bot/**"])
        # The first CI run fails once, whatever it tests: that PR is red alone, then green on the same SHA.
        await world.sim.fault(kind="ci", action="fail", repo=world.repo, count=1)
        for number in numbers:
            await world.queue(number)
        entries = {number: await world.final_entry(number, within=180) for number in numbers}
        assert {n: e.state for n, e in entries.items()} == {
            n: ("failed" if n == culprit else "merged") for n in numbers
        }
        assert entries[culprit].reason == "checks_failed"
        await world.says(culprit, "Not merged", "ci/test")

        main = await world.main_sha()
        assert "broken.flag" not in await files_at(world.sim, world.repo, main)
        history = await git_log(world.sim, world.repo, main)
        landed = [entries[n].merged_sha for n in numbers if n != culprit]
        assert all(sha in history for sha in landed)
        assert untested_base_moves(await world.sim.log(), 0, pusher=world.bot.login) == []

        rows = await attempts(world.engine)
        by_id = {row.id: row for row, _ in rows}
        # Several candidates were under test at once: an attempt started on another's candidate before that
        # one was finished.
        stacked = [
            row
            for row, _ in rows
            if row.parent_id is not None
            and row.created_at <= (by_id[row.parent_id].finished_at or row.created_at)
            and row.base_sha == by_id[row.parent_id].candidate_sha
        ]
        assert len(stacked) >= 3, [(row.id, row.parent_id, row.state) for row, _ in rows]
        # The flaky red was tested again on the same SHA, turned green and was counted as a flake.
        retried = [row for row, _ in rows if row.reason == "retried"]
        assert retried, [(row.id, row.reason) for row, _ in rows]
        retries = {row.retry_of: row for row, _ in rows if row.retry_of is not None}
        outcomes = {row.reason_detail.get("outcome") for row in retried}
        assert "flaky" in outcomes  # the faulted run
        assert "confirmed" in outcomes  # the culprit, red again on its re-test
        for row in retried:
            assert retries[row.id].candidate_sha == row.candidate_sha  # the very same commit
            assert retries[row.id].ref != row.ref  # on a fresh ref

        async with world.engine.connect() as connection:
            window = (await connection.execute(select(Train.window))).scalar()
        # Halved by the culprit's failure (never below the floor of 2), one deeper per landing since, up to 4.
        assert window is not None and 2 <= window <= 4
