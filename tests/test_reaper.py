"""The reaper never rescues a slow but alive gate (docs/faults.md #8): a fresh lease is left alone, and an
expired one only wakes the train, whose gate must then win the train's lock — which a live holder keeps."""

from __future__ import annotations

from datetime import timedelta

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings
from bot.db import queries
from bot.db.models import Attempt
from bot.db.session import make_sessionmaker
from bot.forge.client import GiteaClient
from bot.gate.locks import TrainLock
from bot.scheduler.reap import Reaper
from tests.clocks import StillClock


async def test_fresh_lease_is_left_alone_and_an_expired_one_only_wakes_the_train(
    engine: AsyncEngine, database_url: str, settings: Settings
) -> None:
    sessions = make_sessionmaker(engine)
    clock = StillClock()
    async with sessions.begin() as session:
        repo = await queries.ensure_repository(session, "example", "example")
        train = await queries.ensure_train(session, repo.id, "main")
        attempt = Attempt(
            train_id=train.id,
            state="testing",
            base_sha="a" * 40,
            candidate_sha="b" * 40,
            lease_owner="the slow gate",
            lease_expires_at=clock.now() + timedelta(seconds=settings.lease_seconds),
        )
        session.add(attempt)
    slow_gate = await TrainLock.try_acquire(database_url, train.id)
    assert slow_gate is not None
    woken: list[int] = []
    no_repos = settings.model_copy(update={"repos": ()})  # no staging refs to look at: no forge calls
    async with aiohttp.ClientSession() as http:
        forge = GiteaClient(http, "http://127.0.0.1:9", None)
        reaper = Reaper(no_repos, sessions, forge, clock, woken.append)
        try:
            assert (await reaper.run()).resumed == 0
            assert woken == []

            clock.at += timedelta(seconds=settings.lease_seconds + 1)  # the gate is slow: its lease ran out
            assert (await reaper.run()).resumed == 1
            assert woken == [train.id]
            # Whoever the wake-up reaches must take the train's lock first, and the slow gate still holds it.
            assert await TrainLock.try_acquire(database_url, train.id) is None
            await slow_gate.check()
        finally:
            await slow_gate.release()
    async with sessions() as session:
        row = (await session.execute(select(Attempt).where(Attempt.id == attempt.id))).scalar_one()
    assert (row.state, row.version, row.lease_owner) == ("testing", 1, "the slow gate")
    # Once the slow gate is gone, the lock is free for the one that resumes the attempt.
    successor = await TrainLock.try_acquire(database_url, train.id)
    assert successor is not None
    await successor.release()
