"""The schema: models and migrations agree, the partial unique indexes hold, locks never leak via the pool."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.base import Base
from bot.db.models import Entry, PullRequest, Repository, Train


async def test_models_and_migrations_agree(engine: AsyncEngine) -> None:
    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as connection:
        differences = await connection.run_sync(diff)
    assert differences == []


async def test_every_constraint_is_named_by_the_convention(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        names = (
            await connection.execute(
                text(
                    "SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
                    "WHERE n.nspname = 'public' AND c.contype IN ('p', 'u', 'f', 'c') "
                    "AND c.conrelid <> 'alembic_version'::regclass"
                )
            )
        ).scalars()
        names = list(names)
        assert names
        assert [name for name in names if name.split("_", 1)[0] not in {"pk", "uq", "fk", "ck"}] == []


async def _pull_request(connection: Any) -> tuple[int, int]:
    repo = (await connection.execute(insert(Repository).values(owner="o", name="r").returning(Repository.id))).scalar()
    train = (
        await connection.execute(insert(Train).values(repository_id=repo, branch="main").returning(Train.id))
    ).scalar()
    pull = (
        await connection.execute(insert(PullRequest).values(repository_id=repo, number=1).returning(PullRequest.id))
    ).scalar()
    return train, pull


def _entry(train: int, pull: int, state: str) -> Any:
    return insert(Entry).values(
        train_id=train, pull_request_id=pull, state=state, approved_sha="a" * 40, approved_by="u", trigger="comment"
    )


async def test_one_active_entry_per_pull_request(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        train, pull = await _pull_request(connection)
        # Any number of finished entries may sit beside one active one.
        for state in ("merged", "failed", "cancelled", "cancelled", "queued"):
            await connection.execute(_entry(train, pull, state))
    for state in ("waiting", "queued", "testing"):
        with pytest.raises(IntegrityError, match="uq_entries_one_active_per_pull_request"):
            async with engine.begin() as connection:
                await connection.execute(_entry(train, pull, state))


async def test_entry_state_is_checked(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        train, pull = await _pull_request(connection)
    with pytest.raises(IntegrityError, match="ck_entries_state"):
        async with engine.begin() as connection:
            await connection.execute(_entry(train, pull, "exploded"))


async def test_pool_returns_connections_without_advisory_locks(engine: AsyncEngine) -> None:
    # A session lock taken on a pooled connection must not survive its return to the pool: the next user of
    # that connection would otherwise hold it re-entrantly (DESIGN.md, "Choices already measured").
    async with engine.connect() as connection:
        await connection.execute(text("SELECT pg_advisory_lock(4242, 1)"))
        await connection.commit()
    async with engine.connect() as connection:
        held = (
            await connection.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 4242 AND objid = 1")
            )
        ).scalar_one()
    assert held == 0
