"""Alembic environment: async engine, the bot's metadata, URL from the config attributes or the env."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import bot.db.models  # noqa: F401  (registers the tables on Base.metadata)
from bot.db.base import Base
from bot.db.session import async_url

target_metadata = Base.metadata


def _url() -> str:
    url = context.config.attributes.get("url") or os.environ.get("MERGE_BOT_DATABASE_URL")
    if not url:
        raise RuntimeError("no database URL: pass one to bot.db.migrate or set MERGE_BOT_DATABASE_URL")
    return async_url(str(url))


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
