"""A ``/merge`` whose intake is cut short must still queue the PR (promise 4, docs/faults.md #43, #19, #23).

The intake records each command under its source (``comment:<id>``) so that a redelivery or a reconciler
pass acts once; it reads the forge (permission, the PR, protection, dependencies) before it creates the
entry. Cut short in between — the process killed, or a forge read failing past the client's retries — it
must leave nothing that makes the next pass think the command was done: the command is recorded in the
transaction that creates the entry. (It used not to be: the command was committed first, and these two
tests failed.) A slow (or failing) permission read holds the intake at exactly that point.
"""

from __future__ import annotations

import pytest

from tests.crash.conftest import MakeWorld
from tests.crash.harness import BotProcess, CrashWorld, eventually, violations

pytestmark = pytest.mark.slow


async def one_pr_and_a_bot(make_world: MakeWorld) -> tuple[CrashWorld, str, int, BotProcess]:
    """A repository with one green PR, and the bot running, listening and past its first reconciler pass."""
    world = await make_world()
    repo = world.repos[0]
    [number] = await world.open_prs(repo, [("feature-a", {"a.txt": "a\n"})])
    bot = world.bot_process()
    await bot.start()
    await world.ready(bot)
    await world.reconciled()
    return world, repo, number, bot


async def hold_permission_reads(world: CrashWorld) -> None:
    """Every permission read (the webhook's intake and the reconciler's alike) hangs 4 s until the faults go."""
    await world.sim.fault(
        kind="http", method="GET", path="/api/v1/repos/*/collaborators/*/permission", status=0, latency_s=4, count=-1
    )


async def kill_mid_intake(world: CrashWorld, bot: BotProcess) -> None:
    """Kill the bot once an intake waits on a permission read, prove that nothing was queued, heal the forge."""

    async def held() -> bool:
        return any(fault["hits"] for fault in await world.sim.sim_api("GET", "/_sim/faults"))

    await eventually(held, within=15, what="an intake to wait for a permission read")
    await bot.kill()
    assert await world.entries() == [], "the crash must land before the entry exists"
    await world.sim.sim_api("DELETE", "/_sim/faults")


async def test_merge_command_survives_a_crash_in_the_middle_of_its_intake(make_world: MakeWorld) -> None:
    world, repo, number, bot = await one_pr_and_a_bot(make_world)
    await hold_permission_reads(world)
    await world.queue(repo, number)
    await kill_mid_intake(world, bot)
    await bot.start()

    await world.queued(1, within=6)  # the reconciler passes every second; a retried delivery comes after 2 s
    outcomes = await world.settled(1, within=30)
    assert outcomes == {(repo, number): "merged"}
    assert await violations(world) == []


async def test_merge_command_survives_a_forge_outage_during_its_intake(make_world: MakeWorld) -> None:
    world, repo, number, _bot = await one_pr_and_a_bot(make_world)
    # Every try of the intake's permission read fails (the client's GET retries included), then the forge heals.
    await world.sim.fault(
        kind="http", method="GET", path="/api/v1/repos/*/collaborators/*/permission", status=503, count=5
    )
    await world.queue(repo, number)

    await world.queued(1, within=6)  # the reconciler passes every second; a retried delivery comes after 2 s
    outcomes = await world.settled(1, within=30)
    assert outcomes == {(repo, number): "merged"}
    assert await violations(world) == []


async def test_queue_label_survives_a_crash_in_the_middle_of_its_intake(make_world: MakeWorld) -> None:
    """The same for the queue label: its arrival is recorded only with the entry, so after the restart the
    reconciler sees it again and attributes it to the labeller from the PR's timeline."""
    world, repo, number, bot = await one_pr_and_a_bot(make_world)
    await world.sim.create_label(repo, "merge-queue")
    await hold_permission_reads(world)
    await world.sim.api(
        "POST", f"/repos/{repo}/issues/{number}/labels", token=world.maint.token, json={"labels": ["merge-queue"]}
    )
    await kill_mid_intake(world, bot)
    await bot.start()

    await world.queued(1, within=10)
    outcomes = await world.settled(1, within=30)
    assert outcomes == {(repo, number): "merged"}
    [entry] = await world.entries()
    assert (entry.trigger, entry.approved_by) == ("label", "maint")
    assert await violations(world) == []
