"""The reconciler's discovery step: list the patterns (in full every ``discovery_seconds``, else what changed
since the last pass), apply what changed to the managed set in the database, set new repositories up on the
forge, and wake the trains of the repositories that left so that their gates wind them down.

It runs inside the reconciler's job, which one process at a time runs (``cluster_once``), so one writer
keeps the managed set and every replica reads it from the database (``bot.repos.managed``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.db import queries
from bot.db.models import Repository
from bot.forge.client import GiteaClient
from bot.forge.errors import ForgeError
from bot.logs import get_logger
from bot.repos import discovery
from bot.repos.managed import explicit
from bot.repos.patterns import discovers
from bot.setup import Setup

log = get_logger(__name__)
FULL_CURSOR = "discovery"
RECENT_CURSOR = "discovery:recent"
# How far back an incremental listing looks before the last pass: the clocks of the bot and the forge may
# disagree this much (what it misses, the next full listing finds).
RECENT_LAG = timedelta(seconds=30)


@dataclass
class Discovered:
    added: list[str] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (name, why)
    full: bool = False
    errors: list[str] = field(default_factory=list)


class Discovery:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        forge: GiteaClient,
        setup: Setup,
        wake: Callable[[int], None],
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._forge = forge
        self._setup = setup
        self._wake = wake
        self._owner_ids: dict[str, int] = {}
        self._set_up_here = False  # this process sets every discovered repository up once (the secret may be new)

    async def run(self, now: datetime) -> Discovered:
        result = Discovered()
        patterns = self._settings.patterns
        if not discovers(patterns):
            await self._forget(now, result)  # the patterns that found them left the settings
            return result
        async with self._sessions() as session:
            last_full = await queries.cursor(session, FULL_CURSOR)
            last_recent = await queries.cursor(session, RECENT_CURSOR)
        due = last_full is None or now - last_full >= timedelta(seconds=self._settings.discovery_seconds)
        if due or last_recent is None:
            found = await discovery.list_all(self._forge, patterns)
            result.full = True
        else:
            found = await discovery.list_recent(self._forge, patterns, last_recent - RECENT_LAG, self._owner_ids)
        self._owner_ids.update(found.owner_ids)
        result.errors = found.errors
        await self._apply(found, now, result)
        async with self._sessions.begin() as session:
            if result.full:
                await queries.set_cursor(session, FULL_CURSOR, now)
            await queries.set_cursor(session, RECENT_CURSOR, now)
        await self._set_up(now)
        return result

    async def _apply(self, found: discovery.Found, now: datetime, result: Discovered) -> None:
        async with self._sessions.begin() as session:
            current = await discovery.discovered(session)
            changes = discovery.changes(
                {key: name for key, (name, _) in current.items()}, found, self._settings.explicit_repos
            )
            for full_name, pattern in changes.added:
                await discovery.add(session, full_name, pattern)
                result.added.append(full_name)
                log.info("discovery.added", repo=full_name, pattern=pattern)
        for full_name, why in changes.dropped:
            if why is None:
                why = await discovery.why_gone(self._forge, full_name, current[full_name.lower()][1])
                if why is None:
                    continue  # the forge cannot say now: it stays managed until it can
            async with self._sessions.begin() as session:
                trains = await discovery.drop(session, full_name, why, now)
            result.dropped.append((full_name, why.value))
            log.warning("discovery.dropped", repo=full_name, why=why.value, trains=trains)
            for train_id in trains:
                self._wake(train_id)  # its gate cancels what is queued there (repository_unmanaged)

    async def _forget(self, now: datetime, result: Discovered) -> None:
        """With no pattern left in the settings, what discovery found is no longer managed (unless a setting
        names it): each repository is dropped as ``not_matched`` and its gates wind its queue down, so nothing
        queued there is left active with no gate to work it."""
        async with self._sessions() as session:
            names = [name for name, _ in (await discovery.discovered(session)).values()]
        for full_name in names:
            if explicit(self._settings, full_name):
                continue
            async with self._sessions.begin() as session:
                trains = await discovery.drop(session, full_name, discovery.Why.NOT_MATCHED, now)
            result.dropped.append((full_name, discovery.Why.NOT_MATCHED.value))
            log.warning("discovery.dropped", repo=full_name, why=discovery.Why.NOT_MATCHED.value, trains=trains)
            for train_id in trains:
                self._wake(train_id)

    async def _set_up(self, now: datetime) -> None:
        """Each discovered repository not set up yet (all of them, the first time in this process): its
        webhook (unless its organisation's hook serves it) and merge styles. A failure is tried again on the
        next pass."""
        query = select(Repository.id, Repository.owner, Repository.name).where(
            Repository.discovered_by.is_not(None), Repository.unmanaged_at.is_(None)
        )
        if self._set_up_here:
            query = query.where(Repository.set_up_at.is_(None))
        async with self._sessions() as session:
            rows = (await session.execute(query.order_by(Repository.id))).all()
        for repository_id, owner, name in rows:
            try:
                await self._setup.repository(f"{owner}/{name}")
            except ForgeError as exc:
                log.warning("discovery.setup_failed", repo=f"{owner}/{name}", error=str(exc))
                async with self._sessions.begin() as session:
                    await session.execute(
                        update(Repository).where(Repository.id == repository_id).values(set_up_at=None)
                    )
                continue
            async with self._sessions.begin() as session:
                await session.execute(update(Repository).where(Repository.id == repository_id).values(set_up_at=now))
        self._set_up_here = True
