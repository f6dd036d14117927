"""The serial queue end to end: bot + simulator + real PostgreSQL, CI running the repository's script."""

from __future__ import annotations

from tests.e2e.conftest import World


async def test_queued_pr_lands_as_the_tested_commit(world: World) -> None:
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await world.queue(number)
    entry = await world.final_entry(number)
    assert entry.state == "merged", entry
    main = await world.main_sha()
    assert main == entry.merged_sha
    green = [s for s in await world.statuses(main) if s["context"] == "ci/test"]
    assert green and green[0]["status"] == "success"
    pr = await world.sim.get_pr(world.repo, number)
    assert pr["merged"] is True
    assert any("Merged by the queue" in body for body in await world.comments(number))


async def test_semantic_conflict_second_pr_is_rejected(world: World) -> None:
    first = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    second = await world.open_pr("feature-b", {"feature-b.flag": "b\n"})
    await world.queue(first)
    await world.queue(second)
    a = await world.final_entry(first)
    b = await world.final_entry(second)
    assert a.state == "merged"
    assert b.state == "failed"
    assert b.reason == "checks_failed"
    main = await world.main_sha()
    assert main == a.merged_sha
    assert any("ci/test" in body and "Not merged" in body for body in await world.comments(second))
