"""The managed set as every replica sees it: the repositories named in the settings, plus those discovery found
under a pattern and has not dropped since (``repositories.discovered_by`` set, ``unmanaged_at`` NULL). Only the
reconciler (once across all copies) writes the discovered part; everyone reads it from the database, so the
replicas agree without talking to each other.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.config import Settings
from bot.db.models import Repository
from bot.repos.patterns import discovers

CACHE_SECONDS = 2.0  # how long the web process trusts its copy of the discovered set


def explicit(settings: Settings, full_name: str) -> bool:
    wanted = full_name.lower()
    return any(repo.lower() == wanted for repo in settings.explicit_repos)


async def discovered_names(session: AsyncSession) -> list[str]:
    rows = await session.execute(
        select(Repository.owner, Repository.name).where(
            Repository.discovered_by.is_not(None), Repository.unmanaged_at.is_(None)
        )
    )
    return [f"{owner}/{name}" for owner, name in rows]


async def managed_names(session: AsyncSession, settings: Settings) -> list[str]:
    """Every managed repository, the named ones first, each once (case-insensitively)."""
    names = {name.lower(): name for name in settings.explicit_repos}
    if discovers(settings.patterns):
        for name in await discovered_names(session):
            names.setdefault(name.lower(), name)
    return list(names.values())


async def is_managed(session: AsyncSession, settings: Settings, full_name: str) -> bool:
    if explicit(settings, full_name):
        return True
    if not discovers(settings.patterns):
        return False
    owner, _, name = full_name.partition("/")
    query = select(Repository.id).where(
        func.lower(Repository.owner) == owner.lower(),
        func.lower(Repository.name) == name.lower(),
        Repository.discovered_by.is_not(None),
        Repository.unmanaged_at.is_(None),
    )
    return (await session.execute(query.limit(1))).first() is not None


def retired(settings: Settings, repo: Repository) -> bool:
    """A repository discovery dropped (and no setting names it): its queue is wound down."""
    return repo.unmanaged_at is not None and not explicit(settings, repo.full_name)


class ManagedCache:
    """The managed set for the pages: the settings, and the discovered part read from the database at most
    every ``CACHE_SECONDS``; the webhook asks :meth:`contains`, which reads the one repository afresh."""

    def __init__(
        self, settings: Settings, engine: AsyncEngine, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._monotonic = monotonic
        self._names: dict[str, str] = {}
        self._read_at: float | None = None

    async def names(self) -> list[str]:
        await self._refresh()
        return self.known()

    def known(self) -> list[str]:
        """The managed set as last read (without reading the database again)."""
        explicit_names = {name.lower(): name for name in self._settings.explicit_repos}
        return list({**self._names, **explicit_names}.values())

    async def contains(self, full_name: str) -> bool:
        """Whether a delivery for ``full_name`` is taken: for a discovered repository, read afresh (one row), so
        one dropped or found a moment ago is judged on what is true now, not on the cached set."""
        if explicit(self._settings, full_name):
            return True
        if not discovers(self._settings.patterns):
            return False
        async with AsyncSession(self._engine) as session:
            return await is_managed(session, self._settings, full_name)

    async def _refresh(self) -> None:
        if not discovers(self._settings.patterns):
            return
        now = self._monotonic()
        if self._read_at is not None and now - self._read_at < CACHE_SECONDS:
            return
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                select(Repository.owner, Repository.name).where(
                    Repository.discovered_by.is_not(None), Repository.unmanaged_at.is_(None)
                )
            )
            self._names = {f"{o}/{n}".lower(): f"{o}/{n}" for o, n in rows}
        self._read_at = now
