"""With no pattern left in the settings, what discovery found stops being managed (docs/faults.md #56): each
repository is dropped as ``not_matched`` and its trains woken, so their gates cancel what is queued there; a
repository the settings name stays."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from bot.config import Settings
from bot.db import queries
from bot.db.models import Repository
from bot.repos import discovery
from bot.scheduler.discover import Discovery

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def test_without_a_pattern_what_was_discovered_is_dropped_and_its_trains_woken(
    engine: AsyncEngine, settings: Settings
) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions.begin() as session:
        for name in ("acme/one", "acme/two"):
            await discovery.add(session, name, "acme/*")
        repo = await queries.find_repository(session, "acme/one")
        assert repo is not None
        train = await queries.ensure_train(session, repo.id, "main")
    named = settings.model_copy(update={"repos": ("acme/two",)})  # named now: it stays
    woken: list[int] = []
    found = await Discovery(named, sessions, None, None, woken.append).run(NOW)  # type: ignore[arg-type]

    assert found.dropped == [("acme/one", "not_matched")]
    assert woken == [train.id]
    async with engine.connect() as connection:
        rows = dict((await connection.execute(select(Repository.name, Repository.unmanaged_reason))).tuples().all())
    assert rows == {"one": "not_matched", "two": None}
