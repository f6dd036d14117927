"""Freezes and merge windows end to end: the bot as it runs, the simulator with real git and CI, PostgreSQL,
and a JSON webhook receiver on 127.0.0.1 as the chat.

A freeze stops merging while PRs are still queued and tested: the green candidate waits, the PRs' statuses
say why, and an unfreeze lands it. Outside the merge windows the queue is frozen the same way, on the bot's
(injected) clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import holds
from bot.db.models import Attempt, HoldRow, HoldSource, TrainEvent
from bot.db.session import make_sessionmaker
from bot.queue.model import HoldKind
from gitea_sim.testing import SimHandle
from tests.clocks import ShiftedClock
from tests.e2e.conftest import CI_SCRIPT, World, eventually, make_world
from tests.receiver import Receiver, running_receiver

pytestmark = pytest.mark.slow
BERLIN = ZoneInfo("Europe/Berlin")
HELD = "passed; lands when no longer frozen outside the merge windows "


@pytest.fixture
async def told(sim: SimHandle, engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[tuple[World, Receiver]]:
    async with running_receiver() as receiver:
        extra = {"MERGE_BOT_NOTIFY_URLS": receiver.url("/chat")}
        async for world in make_world(sim, engine, tmp_path, extra=extra):
            yield world, receiver


async def own_status(world: World, number: int) -> dict[str, Any] | None:
    """The latest `merge-bot` status on the PR's head."""
    pr = await world.sim.get_pr(world.repo, number)
    found = [s for s in await world.statuses(pr["head"]["sha"]) if s["context"] == "merge-bot"]
    return found[0] if found else None


async def says_status(world: World, number: int, description: str, within: float = 60) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        status = await own_status(world, number)
        return status if status is not None and status["description"] == description else None

    return await eventually(check, within=within, what=f"#{number}'s status to say {description!r}")


async def test_a_freeze_holds_merges_while_tests_go_on_and_an_unfreeze_lands_them(
    told: tuple[World, Receiver],
) -> None:
    world, receiver = told
    first = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    second = await world.open_pr("feature-c", {"feature-c.txt": "c\n"})
    before = await world.main_sha()
    await world.queue(second, "/merge freeze release 4.2", by=world.owner)  # an admin, on any PR
    await world.says(second, "Froze the queue of", "release 4.2", "`/merge unfreeze`")
    await world.queue(first)
    await world.queue(second)

    # The first is tested, goes green and waits; the second waits in line; the statuses say why.
    await says_status(world, first, "passed; lands when no longer frozen: release 4.2")
    await says_status(world, second, "frozen: release 4.2; position 1")
    assert (await world.entry(first)).state == "testing"
    assert await world.main_sha() == before

    # A writer who is not an admin is refused, and nothing changes.
    await world.queue(first, "/merge unfreeze", by=world.maint)
    await world.says(first, f"@{world.maint.login}, only admins of {world.repo}", "Nothing was changed")
    async with world.engine.connect() as connection:
        unlifted = (await connection.execute(select(HoldRow.id).where(HoldRow.lifted_at.is_(None)))).all()
    assert len(unlifted) == 1 and await world.main_sha() == before

    await world.queue(first, "/merge unfreeze", by=world.owner)
    assert (await world.final_entry(first)).state == "merged"
    assert (await world.final_entry(second)).state == "merged"
    await world.says(first, "Unfroze the queue of")

    async with world.engine.connect() as connection:
        events = (await connection.execute(select(TrainEvent).order_by(TrainEvent.id))).all()
    assert [(e.kind, e.branch, e.actor, e.source, e.reason) for e in events] == [
        ("frozen", None, world.owner.login, "comment", "release 4.2"),
        ("unfrozen", None, world.owner.login, "comment", "release 4.2"),
    ]

    async def both() -> dict[str, Any] | None:
        said = {body["title"]: body for body in receiver.bodies}
        wanted = (f"{world.repo}: the queue is frozen", f"{world.repo}: the queue is running again")
        return said if all(title in said for title in wanted) else None

    said = await eventually(both, within=60, what="the chat to hear of the freeze and the unfreeze")
    assert f"frozen by {world.owner.login}: release 4.2" in said[f"{world.repo}: the queue is frozen"]["message"]


def next_monday_evening() -> datetime:
    """18:00 in Berlin on a Monday still to come: after the office window, and later than the real time (the
    database stamps deliveries with its own clock, which the bot's must not be behind)."""
    today = datetime.now(BERLIN).date()
    monday = today + timedelta(days=(7 - today.weekday()) % 7 or 7)
    return datetime.combine(monday, time(18, 0), tzinfo=BERLIN)


def until(when: datetime) -> str:
    return f"until {when.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


async def test_a_merge_window_closes_and_opens_on_the_bots_clock(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    monday = next_monday_evening()
    clock = ShiftedClock(monday)
    extra = {"MERGE_BOT_WINDOWS": "Mon-Fri 09:00-17:00 Europe/Berlin"}
    async for world in make_world(sim, engine, tmp_path, extra=extra, clock=clock):
        before = await world.main_sha()
        first = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
        await world.queue(first)
        tuesday = monday + timedelta(hours=15)  # 09:00 on Tuesday
        await says_status(world, first, HELD + until(tuesday))
        assert (await world.entry(first)).state == "testing" and await world.main_sha() == before

        clock.jump_to(tuesday + timedelta(seconds=1))  # the window opens
        merged = await world.final_entry(first)
        assert merged.state == "merged" and await world.main_sha() == merged.merged_sha

        clock.jump_to(tuesday + timedelta(hours=8, seconds=1))  # 17:00: it closes
        second = await world.open_pr("feature-c", {"feature-c.txt": "c\n"})
        await world.queue(second)
        wednesday = tuesday + timedelta(days=1)
        await says_status(world, second, HELD + until(wednesday))
        assert await world.main_sha() == merged.merged_sha

        clock.jump_to(wednesday)
        assert (await world.final_entry(second)).state == "merged"


async def hold(world: World, kind: HoldKind, *, lift: bool = False, cancel_running: bool = False) -> None:
    """What ``merge-bot pause``/``unpause`` does, on the world's database (the gate polls and sees it)."""
    target, now = holds.Target(*world.repo.split("/"), "main"), datetime.now(UTC)
    async with make_sessionmaker(world.engine).begin() as session:
        if lift:
            await holds.lift(session, world.settings, target, kind, by="ops", source="cli", now=now)
        else:
            await holds.place(
                session,
                world.settings,
                target,
                kind,
                reason="CI migration",
                by="ops",
                source=HoldSource.CLI,
                now=now,
                cancel_running=cancel_running,
            )


async def test_a_pause_starts_nothing_and_with_cancel_stops_what_runs(world: World) -> None:
    slow = CI_SCRIPT.replace("set -e\n", "set -e\nsleep 4\n")  # long enough to be paused under test
    first = await world.open_pr("slow", {"ci.sh": slow, "slow.txt": "slow\n"})
    await world.queue(first)
    await world.in_state(first, "testing")
    await hold(world, HoldKind.PAUSE, cancel_running=True)
    await world.in_state(first, "queued")  # its candidate was abandoned, it is back in line
    await says_status(world, first, "paused: CI migration; position 1")
    async with world.engine.connect() as connection:
        reasons = (await connection.execute(select(Attempt.state, Attempt.reason))).all()
    assert [tuple(r) for r in reasons] == [("abandoned", "paused")]
    second = await world.open_pr("feature-c", {"feature-c.txt": "c\n"})
    await world.queue(second)
    await says_status(world, second, "paused: CI migration; position 2")
    assert (await world.entry(first)).state == "queued"  # nothing new started

    await hold(world, HoldKind.PAUSE, lift=True)
    assert (await world.final_entry(first)).state == "merged"
    assert (await world.final_entry(second)).state == "merged"
