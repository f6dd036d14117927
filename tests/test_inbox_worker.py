"""The inbox worker: claims with SKIP LOCKED, retries a failing delivery with backoff, parks it after N tries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.models import WebhookDelivery
from bot.db.session import make_sessionmaker
from bot.inbox.worker import InboxWorker
from tests.clocks import StillClock


async def store(engine: AsyncEngine, uuid: str, at: datetime) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            insert(WebhookDelivery).values(
                delivery_uuid=uuid, event="push", event_type="push", payload={"n": uuid}, next_try_at=at
            )
        )


async def rows(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as connection:
        result = await connection.execute(select(WebhookDelivery.__table__))
        return {row.delivery_uuid: row for row in result}


async def test_a_failing_delivery_is_retried_with_backoff_then_parked(engine: AsyncEngine) -> None:
    clock = StillClock(datetime(2026, 1, 1, tzinfo=UTC))
    handled: list[str] = []

    async def handler(event_type: str, payload: Any) -> None:
        if payload["n"] == "bad":
            raise RuntimeError("the forge said no")
        handled.append(payload["n"])

    worker = InboxWorker(make_sessionmaker(engine), handler, clock, max_tries=3)
    await store(engine, "good", clock.at)
    await store(engine, "bad", clock.at)
    assert await worker.run_once() == 2
    state = await rows(engine)
    assert handled == ["good"]
    assert state["good"].state == "done"
    assert (state["bad"].state, state["bad"].tries) == ("pending", 1)
    assert state["bad"].next_try_at > clock.at  # backoff: not claimed again right away
    assert await worker.run_once() == 0
    for tries in (2, 3):
        clock.at = (await rows(engine))["bad"].next_try_at
        assert await worker.run_once() == 1
        assert (await rows(engine))["bad"].tries == tries
    bad = (await rows(engine))["bad"]
    assert bad.state == "parked"
    assert "the forge said no" in bad.last_error
    clock.at += timedelta(days=1)
    assert await worker.run_once() == 0  # parked deliveries stay parked


async def test_two_workers_never_handle_the_same_delivery(engine: AsyncEngine) -> None:
    clock = StillClock(datetime(2026, 1, 1, tzinfo=UTC))
    seen: list[str] = []
    gate = asyncio.Event()
    both_busy = asyncio.Event()

    async def slow(event_type: str, payload: Any) -> None:
        seen.append(payload["n"])
        if len(seen) == 2:
            both_busy.set()
        await gate.wait()

    for n in range(6):
        await store(engine, f"d{n}", clock.at)
    sessions = make_sessionmaker(engine)
    first = InboxWorker(sessions, slow, clock, batch=3)
    second = InboxWorker(sessions, slow, clock, batch=3)
    runs = [asyncio.create_task(first.run_once()), asyncio.create_task(second.run_once())]
    await asyncio.wait_for(both_busy.wait(), 10)  # each worker holds a claim of its own
    gate.set()
    assert sorted(await asyncio.gather(*runs)) == [3, 3]
    assert sorted(seen) == [f"d{n}" for n in range(6)]
