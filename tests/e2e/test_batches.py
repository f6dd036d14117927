"""Batches end to end: several PRs in one candidate, bisection of a red batch, each PR marked merged at its own
commit. The bot, the simulator with real git and CI, and PostgreSQL, as in the other end-to-end tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.db.models import Attempt, AttemptEntry
from gitea_sim.testing import SimHandle
from tests.crash.invariants import untested_base_moves
from tests.e2e.conftest import World, eventually, make_world

pytestmark = pytest.mark.slow

BATCHES = {  # all queued within the wait; one batch at a time, a red PR fails at once
    "MERGE_BOT_BATCH_MAX": "4",
    "MERGE_BOT_BATCH_WAIT_SECONDS": "10",
    "MERGE_BOT_MAX_PARALLEL": "1",
    "MERGE_BOT_FLAKY_RETRIES": "0",
}


async def git_log(sim: SimHandle, repo: str, sha: str) -> list[str]:
    """Every commit reachable from ``sha``, newest first (read from the simulator's repository itself)."""
    owner, name = repo.split("/")
    found = sim.sim.state.repo_by_name(owner, name)
    assert found is not None
    return await sim.sim.git(found).rev_list("--topo-order", sha)


async def files_at(sim: SimHandle, repo: str, sha: str) -> set[str]:
    owner, name = repo.split("/")
    found = sim.sim.state.repo_by_name(owner, name)
    assert found is not None
    listed = await sim.sim.git(found).git("ls-tree", "--name-only", sha)
    return set(listed.split())


async def attempts(engine: AsyncEngine) -> list[tuple[Attempt, list[int]]]:
    async with engine.connect() as connection:
        rows = (await connection.execute(select(Attempt.__table__).order_by(Attempt.id))).all()
        members = (
            await connection.execute(select(AttemptEntry.__table__).order_by(AttemptEntry.position))
        ).all()
    return [(row, [m.entry_id for m in members if m.attempt_id == row.id]) for row in rows]  # type: ignore[misc]


async def batch_with_culprit(world: World, at: int) -> tuple[list[int], dict[int, Any]]:
    """Four PRs queued at once (one batch); the one at ``at`` adds ``feature-b.flag``, red on top of the
    ``feature-a.flag`` pushed to main first (a semantic conflict). Their numbers and final entries."""
    await world.sim.push_commit(world.repo, world.owner, "main", {"feature-a.flag": "a\n"}, message="Feature A")
    files = [{f"file-{n}.txt": f"{n}\n"} for n in range(4)]
    files[at] = {"feature-b.flag": "b\n"}
    numbers = [await world.open_pr(f"pr-{n}", change) for n, change in enumerate(files)]
    for number in numbers:
        await world.queue(number)
    return numbers, {number: await world.final_entry(number, within=120) for number in numbers}


@pytest.mark.parametrize("method", ["rebase", "merge", "squash"])
async def test_a_batch_of_three_lands_in_one_candidate_each_pr_at_its_own_commit(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path, method: str
) -> None:
    async for world in make_world(sim, engine, tmp_path, extra={**BATCHES, "MERGE_BOT_BATCH_MAX": "3"}):
        numbers = [await world.open_pr(f"part-{n}", {f"part-{n}.txt": f"{n}\n"}) for n in range(3)]
        for number in numbers:
            await world.queue(number, f"/merge method={method}")
        entries = [await world.final_entry(number) for number in numbers]
        assert [entry.state for entry in entries] == ["merged"] * 3
        main = await world.main_sha()
        assert entries[-1].merged_sha == main  # the last PR's change ends at the tested candidate
        history = await git_log(world.sim, world.repo, main)
        for number, entry in zip(numbers, entries, strict=True):
            pr = await world.sim.get_pr(world.repo, number)
            assert pr["merged"] is True
            assert pr["merge_commit_sha"] == entry.merged_sha  # each PR's page points at its own commit
            assert entry.merged_sha in history
        positions = [history.index(entry.merged_sha) for entry in entries]
        assert positions == sorted(positions, reverse=True)  # in queue order along main
        assert len(set(positions)) == 3
        runs = [a for a, _ in await attempts(world.engine)]
        assert len(runs) == 1  # one candidate, one CI run for all three
        assert untested_base_moves(await world.sim.log(), 0, pusher=world.bot.login) == []
        await world.says(numbers[0], "Merged by the queue", "together with", f"#{numbers[1]}", f"#{numbers[2]}")


async def test_a_batch_of_four_with_a_semantic_conflict_lands_three_and_rejects_the_culprit(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    async for world in make_world(sim, engine, tmp_path, extra=BATCHES):
        numbers, entries = await batch_with_culprit(world, 2)
        culprit = numbers[2]
        assert {n: e.state for n, e in entries.items()} == {
            numbers[0]: "merged",
            numbers[1]: "merged",
            culprit: "failed",
            numbers[3]: "merged",
        }
        assert entries[culprit].reason == "checks_failed"
        assert entries[culprit].reason_detail["bisected"] is True
        assert entries[culprit].reason_detail["target_url"]  # the failing check's link
        await world.says(culprit, "Not merged", "ci/test", "splitting a red batch")
        assert untested_base_moves(await world.sim.log(), 0, pusher=world.bot.login) == []
        main = await world.main_sha()
        history = await git_log(world.sim, world.repo, main)
        for number in (numbers[0], numbers[1], numbers[3]):
            assert entries[number].merged_sha in history
        assert "feature-b.flag" not in await files_at(world.sim, world.repo, main)

        async def settled(engine: AsyncEngine = world.engine) -> list[tuple[Attempt, list[int]]] | None:
            rows = await attempts(engine)
            bisected = [row for row, _ in rows if row.reason == "bisected"]
            return rows if bisected and all("outcome" in row.reason_detail for row in bisected) else None

        rows = await eventually(settled, within=30, what="the bisection to be settled")
        bisected = [row for row, _ in rows if row.reason == "bisected"]
        assert bisected[0].reason_detail["outcome"] == "culprit"
        assert [n for row, ids in rows if row.split_from == bisected[0].id for n in ids]  # its parts were tested
        # The second half, built on the first, is the very tree the batch failed on: not pushed, not re-run.
        known = [row for row, _ in rows if "inherits" in (row.reason_detail or {})]
        assert [row.ref for row in known] == [None]
        assert known[0].reason_detail["inherits"] == bisected[0].id


async def test_a_culprit_in_the_first_half_is_found_by_testing_that_half_pr_by_pr(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    """A red batch of four whose second PR is at fault: its parts are [1], [2] on it, and [3 4] on top (the tree
    that failed: not sent to CI). [1] lands, [2] is red alone on top of it and fails, [3 4], built on the
    culprit, go back in line and land in the next candidate."""
    async for world in make_world(sim, engine, tmp_path, extra=BATCHES):
        numbers, entries = await batch_with_culprit(world, 1)
        culprit = numbers[1]
        assert {n: e.state for n, e in entries.items()} == {n: "failed" if n == culprit else "merged" for n in numbers}
        assert entries[culprit].reason == "checks_failed" and entries[culprit].reason_detail["bisected"] is True
        assert untested_base_moves(await world.sim.log(), 0, pusher=world.bot.login) == []
        rows = await attempts(world.engine)
        (batch,) = [(row, ids) for row, ids in rows if row.reason == "bisected"]
        ids = batch[1]
        assert batch[0].reason_detail["parts"] == [ids[:1], ids[1:2], ids[2:]]
        parts = [(row, part) for row, part in rows if row.split_from == batch[0].id]
        assert [part for _, part in parts] == [ids[:1], ids[1:2], ids[2:]]
        assert parts[1][0].parent_id == parts[0][0].id and parts[2][0].parent_id == parts[1][0].id  # one chain
        # [1] is tested on its own ref (or, its head on the base tip and green there, lands as it is), [2] on its
        # own ref; the second half is the tree that failed: known red, never pushed.
        first, second, rest = (row for row, _ in parts)
        assert first.ref is not None or (first.reason_detail or {}).get("skipped_build") is True
        assert second.ref is not None and rest.ref is None and rest.reason_detail["inherits"] == batch[0].id
        assert (first.state, second.state, rest.state) == ("done", "failed", "abandoned")
        last, carried = rows[-1]
        assert last.split_from is None and carried == ids[2:] and last.state == "done"  # back in line, then landed


async def test_a_batch_that_failed_although_every_part_passes_lands_and_is_counted_flaky(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    async for world in make_world(sim, engine, tmp_path, extra={**BATCHES, "MERGE_BOT_BATCH_MAX": "2"}):
        numbers = [await world.open_pr(f"flaky-{n}", {f"flaky-{n}.txt": f"{n}\n"}) for n in range(2)]
        await world.sim.fault(kind="ci", action="fail", repo=world.repo, count=1)  # the batch's run fails once
        for number in numbers:
            await world.queue(number)
        entries = [await world.final_entry(number, within=120) for number in numbers]
        assert [entry.state for entry in entries] == ["merged", "merged"]
        for number in numbers:
            await world.says(number, "flaky failure of `ci/test`", within=30)
        rows = await attempts(world.engine)
        bisected = [row for row, _ in rows if row.reason == "bisected"]
        assert [row.reason_detail.get("outcome") for row in bisected] == ["flaky"]
        assert untested_base_moves(await world.sim.log(), 0, pusher=world.bot.login) == []


async def test_a_flaky_batch_of_four_is_counted_once_though_its_second_half_was_split_too(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    """The second half of the split is the very tree that failed: it is split without a CI run of its own, so
    when everything lands the flake is the batch's alone, counted and said once."""
    from bot.web.views import flaky_counts

    async for world in make_world(sim, engine, tmp_path, extra=BATCHES):
        numbers = [await world.open_pr(f"flake-{n}", {f"flake-{n}.txt": f"{n}\n"}) for n in range(4)]
        await world.sim.fault(kind="ci", action="fail", repo=world.repo, count=1)  # the batch's run fails once
        for number in numbers:
            await world.queue(number)
        entries = [await world.final_entry(number, within=120) for number in numbers]
        assert [entry.state for entry in entries] == ["merged"] * 4

        async def settled(engine: AsyncEngine = world.engine) -> list[Attempt] | None:
            rows = [row for row, _ in await attempts(engine) if row.reason == "bisected"]
            return rows if len(rows) == 2 and all("outcome" in row.reason_detail for row in rows) else None

        _, second_half = await eventually(settled, within=30, what="both bisections to be settled")
        assert "inherits" in second_half.reason_detail  # split without a run of its own
        async with world.engine.connect() as connection:
            counts = await flaky_counts(AsyncSession(bind=connection))
        assert list(counts.values()) == [{"ci/test": 1}]
        for number in numbers:
            said = [body for body in await world.comments(number) if "flaky failure" in body]
            assert len(said) == 1, said
