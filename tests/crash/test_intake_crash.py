"""A ``/merge`` whose intake is cut short must still queue the PR (promise 4, FAULTS.md 19 and 23).

The intake records each command under its source (``comment:<id>``) so that a redelivery or a reconciler
pass acts once; it reads the forge (permission, the PR, protection, dependencies) before it creates the
entry. Cut short in between — the process killed, or a forge read failing past the client's retries — it
must leave nothing that makes the next pass think the command was done: the command is recorded in the
transaction that creates the entry. (It used not to be: the command was committed first, and these two
tests failed.) A slow (or failing) permission read holds the intake at exactly that point.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bot.db.models import Command
from tests.crash.conftest import MakeWorld
from tests.crash.harness import eventually, violations

pytestmark = pytest.mark.slow


async def test_merge_command_survives_a_crash_in_the_middle_of_its_intake(make_world: MakeWorld) -> None:
    world = await make_world()
    repo = world.repos[0]
    [number] = await world.open_prs(repo, [("feature-a", {"a.txt": "a\n"})])
    bot = world.bot_process()
    await bot.start()
    await world.ready(bot)
    await world.reconciled()
    await world.sim.fault(
        kind="http", method="GET", path="/api/v1/repos/*/collaborators/*/permission", status=0, latency_s=4
    )

    async def command_recorded() -> bool:
        async with world.engine.connect() as connection:
            return bool(await connection.scalar(select(func.count()).select_from(Command)))

    await world.queue(repo, number)
    await eventually(command_recorded, within=15, what="the /merge command to be recorded")
    await bot.kill()  # the intake is waiting for the permission read: the entry does not exist yet
    await world.sim.sim_api("DELETE", "/_sim/faults")
    await bot.start()

    await world.queued(1, within=6)  # the reconciler passes every second; a retried delivery comes after 2 s
    outcomes = await world.settled(1, within=30)
    assert outcomes == {(repo, number): "merged"}
    assert await violations(world) == []


async def test_merge_command_survives_a_forge_outage_during_its_intake(make_world: MakeWorld) -> None:
    world = await make_world()
    repo = world.repos[0]
    [number] = await world.open_prs(repo, [("feature-a", {"a.txt": "a\n"})])
    bot = world.bot_process()
    await bot.start()
    await world.ready(bot)
    await world.reconciled()
    # Every try of the intake's permission read fails (the client's GET retries included), then the forge heals.
    await world.sim.fault(
        kind="http", method="GET", path="/api/v1/repos/*/collaborators/*/permission", status=503, count=5
    )
    await world.queue(repo, number)

    await world.queued(1, within=6)  # the reconciler passes every second; a retried delivery comes after 2 s
    outcomes = await world.settled(1, within=30)
    assert outcomes == {(repo, number): "merged"}
    assert await violations(world) == []
