"""Lost, duplicated and re-delivered webhooks (docs/faults.md #21-#23): the reconciler heals, nothing acts twice."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from bot.db.models import Command, Entry
from tests.e2e.conftest import World


async def count(world: World, model: type) -> int:
    async with world.engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(model)) or 0)


async def test_every_webhook_lost_the_reconciler_still_merges(world: World) -> None:
    await world.reconciled()
    await world.sim.fault(kind="webhook", action="drop", event="*", count=-1)
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await world.queue(number)
    entry = await world.final_entry(number, within=90)
    assert entry.state == "merged"
    assert await world.main_sha() == entry.merged_sha
    dropped = [e for e in await world.sim.log("delivery_fault") if e["action"] == "drop"]
    assert dropped, "the scenario must really have lost its webhooks"


async def test_pr_closed_while_webhooks_are_lost_is_cancelled(world: World) -> None:
    await world.sim.set_ci(world.repo, "sh ci.sh", context="ci/test", delay_s=1.0)
    await world.reconciled()
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await world.queue(number)
    await world.in_state(number, "testing")
    await world.sim.fault(kind="webhook", action="drop", event="*", count=-1)
    await world.sim.api(
        "PATCH", f"/repos/{world.repo}/pulls/{number}", token=world.alice.token, json={"state": "closed"}
    )
    entry = await world.final_entry(number, within=90)
    assert (entry.state, entry.reason) == ("cancelled", "pr_closed")


async def test_duplicated_and_redelivered_webhooks_queue_once(world: World) -> None:
    await world.sim.fault(kind="webhook", action="duplicate", event="*", count=-1)
    await world.sim.fault(kind="webhook", action="redeliver", event="*", count=-1)
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await world.queue(number)
    entry = await world.final_entry(number, within=90)
    assert entry.state == "merged"
    assert await count(world, Entry) == 1
    assert await count(world, Command) == 1
    acks = [body for body in await world.comments(number) if body.startswith("Queued")]
    assert len(acks) == 1


async def test_reaper_deletes_leftover_staging_branches_only(world: World) -> None:
    from tests.e2e.conftest import eventually

    # A staging branch no attempt owns (left by a crash), and a user's branch that merely looks alike.
    await world.sim.push_commit(world.repo, world.owner, "merge-bot/main/999", {"x.txt": "x\n"}, base="main")
    await world.sim.push_commit(world.repo, world.owner, "merge-bot-docs", {"y.txt": "y\n"}, base="main")

    async def names() -> set[str]:
        return {b["name"] for b in await world.sim.api("GET", f"/repos/{world.repo}/branches")}

    async def reaped() -> bool:
        return "merge-bot/main/999" not in await names()

    await eventually(reaped, within=30, what="the reaper to delete the leftover staging branch")
    assert "merge-bot-docs" in await names()


async def test_outcome_the_forge_refused_to_take_is_told_later_once(world: World) -> None:
    """The merge lands while the forge refuses statuses and comments: the PR is told once it takes them again
    (``told_at`` stays empty until then), with exactly one outcome comment."""
    from tests.e2e.conftest import eventually

    await world.sim.set_ci(world.repo, "sh ci.sh", context="ci/test", delay_s=1.0)
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await world.queue(number)
    testing = await world.in_state(number, "testing")
    for path in ("/api/v1/repos/*/issues/*/comments", "/api/v1/repos/*/statuses/*"):
        await world.sim.fault(kind="http", method="POST", path=path, status=500, count=-1)
    entry = await world.final_entry(number, within=60)
    assert entry.state == "merged"

    async def deferred() -> Any:
        found = await world.entry(number)
        return found if found is not None and found.tell_after is not None else None

    later = await deferred() or await eventually(deferred, within=10, what="the telling to be deferred")
    assert later.told_at is None
    assert not [body for body in await world.comments(number) if body.startswith("Merged by the queue")]
    await world.sim.sim_api("DELETE", "/_sim/faults")

    async def told() -> Any:
        found = await world.entry(number)
        return found if found is not None and found.told_at is not None else None

    await eventually(told, within=30, what="the PR to be told once the forge takes comments again")
    merged = [body for body in await world.comments(number) if body.startswith("Merged by the queue")]
    assert len(merged) == 1 and f"merge-bot outcome of entry {entry.id} " in merged[0]
    statuses = await world.sim.api("GET", f"/repos/{world.repo}/commits/{testing.approved_sha}/statuses")
    assert next(s["status"] for s in statuses if s["context"] == "merge-bot") == "success"
