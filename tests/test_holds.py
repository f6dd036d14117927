"""Holds in the database (bot/holds.py): which are in force for a train, and a hold whose end time passed
lifting by itself — recorded in the audit log as nobody's doing, an unfreeze told through the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import holds
from bot.config import load_settings
from bot.db import queries
from bot.db.models import HoldRow, HoldSource, Notification, TrainEvent
from bot.db.session import make_sessionmaker
from bot.queue.model import Hold, HoldKind
from tests.clocks import StillClock

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
SETTINGS = load_settings(
    {
        "MERGE_BOT_WEBHOOK_SECRET": "s",
        "MERGE_BOT_REPOS": "acme/app",
        "MERGE_BOT_NOTIFY_URLS": "json://127.0.0.1:9/never-sent",
    }
)
APP = holds.Target("acme", "app")
MAIN = holds.Target("acme", "app", "main")


async def test_holds_in_force_for_a_train(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as session:
        repo = await queries.ensure_repository(session, "acme", "app")
        main = await queries.ensure_train(session, repo.id, "main")
        await queries.ensure_train(session, repo.id, "next")
        place = {"source": HoldSource.CLI, "now": T0}
        everything = await holds.place(session, SETTINGS, APP, HoldKind.FREEZE, reason="release", by="ann", **place)
        one = await holds.place(
            session, SETTINGS, MAIN, HoldKind.PAUSE, reason="CI", by="bob", until=T0 + timedelta(hours=1), **place
        )
    assert len(everything.trains) == 2 and one.trains == (main.id,)
    async with sessions() as session:
        rows = await holds.in_force(session, T0 + timedelta(minutes=30), repo.id)
        later = await holds.in_force(session, T0 + timedelta(hours=1), repo.id)
    assert holds.for_branch(rows, repo.id, "main") == (
        Hold(HoldKind.PAUSE, "CI", by="bob", until=T0 + timedelta(hours=1), scope="branch"),
        Hold(HoldKind.FREEZE, "release", by="ann", scope="repository"),
    )
    assert holds.for_branch(rows, repo.id, "next") == (Hold(HoldKind.FREEZE, "release", by="ann", scope="repository"),)
    assert [row.kind for row in later] == ["freeze"]  # the pause's end time passed: it counts for nothing


async def test_a_hold_past_its_end_time_lifts_by_itself_once(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    clock = StillClock(T0)
    woken: list[int] = []
    async with sessions.begin() as session:
        repo = await queries.ensure_repository(session, "acme", "app")
        main = await queries.ensure_train(session, repo.id, "main")
        await holds.place(
            session,
            SETTINGS,
            MAIN,
            HoldKind.FREEZE,
            reason="release",
            by="ann",
            source=HoldSource.API,
            now=T0,
            until=T0 + timedelta(hours=2),
        )
    clock.at = T0 + timedelta(hours=1)
    assert await holds.expire_due(sessions, SETTINGS, clock, woken.append) == 0
    clock.at = T0 + timedelta(hours=2, minutes=1)
    assert await holds.expire_due(sessions, SETTINGS, clock, woken.append) == 1
    assert await holds.expire_due(sessions, SETTINGS, clock, woken.append) == 0
    assert woken == [main.id]
    async with sessions() as session:
        (hold,) = (await session.execute(select(HoldRow))).scalars().all()
        events = (await session.execute(select(TrainEvent).order_by(TrainEvent.id))).scalars().all()
        told = (await session.execute(select(Notification.kind).order_by(Notification.id))).scalars().all()
    assert hold.lifted_at == T0 + timedelta(hours=2) and hold.lifted_by is None
    assert [(e.kind, e.actor, e.source, e.at, e.detail) for e in events] == [
        ("frozen", "ann", "api", T0, {"until": (T0 + timedelta(hours=2)).isoformat()}),
        ("unfrozen", None, "schedule", T0 + timedelta(hours=2), {"expired": True}),
    ]
    assert told == ["frozen", "unfrozen"]
    async with sessions.begin() as session:
        with pytest.raises(holds.HoldError, match="acme/app:main is not frozen"):
            await holds.lift(session, SETTINGS, MAIN, HoldKind.FREEZE, by="bea", source="cli", now=clock.at)


def test_an_end_time_is_a_duration_or_an_iso_time_in_the_future() -> None:
    assert holds.parse_until("90m", T0) == T0 + timedelta(minutes=90)
    assert holds.parse_until("1d12h", T0) == T0 + timedelta(days=1, hours=12)
    assert holds.parse_until("2026-06-01T12:00:00+02:00", T0) == T0 + timedelta(hours=1)
    assert holds.parse_until("2026-06-01T10:00Z", T0) == T0 + timedelta(hours=1)
    for bad, complaint in [
        ("", "neither a duration"),
        ("0m", "not in the future"),
        ("2h30", "neither a duration"),
        ("2026-06-01T08:00Z", "not in the future"),
        ("2026-06-01T12:00", "has no time zone"),
    ]:
        with pytest.raises(holds.HoldError, match=complaint):
            holds.parse_until(bad, T0)
