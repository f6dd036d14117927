"""Engines and sessions. The pool resets every returned connection's advisory locks.

A session-level advisory lock left on a pooled connection would be re-entrant for whoever gets that
connection next; the gate therefore holds its lock on a dedicated connection, and the pool runs
``pg_advisory_unlock_all()`` whenever a connection goes back, so no lock can leak through it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def async_url(url: str) -> str:
    """``postgresql://...`` (or ``postgres://``) → ``postgresql+asyncpg://...``."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        scheme = "postgresql+asyncpg"
    else:
        raise ValueError(f"not a PostgreSQL URL scheme: {parts.scheme!r}")
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def make_engine(url: str, *, pool_size: int = 10, application_name: str = "merge-bot") -> AsyncEngine:
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"server_settings": {"application_name": application_name}},
    )
    event.listen(engine.sync_engine, "reset", _unlock_all)
    return engine


def _unlock_all(dbapi_connection: Any, record: Any, reset_state: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT pg_advisory_unlock_all()")
    finally:
        cursor.close()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)
