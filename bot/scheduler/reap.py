"""The reaper: resumes attempts whose gate died, deletes leftover staging branches, prunes the inbox.

It never takes an attempt over itself: it wakes the gate runner for a train whose attempt's lease has
expired, and the runner's gate must win the train's lock first — which a live holder keeps — so a slow
but alive gate is never "rescued" (docs/faults.md #8). A staging branch is deleted only when no active
attempt names it; the gate records a staging ref before it pushes one, so a branch being created is never
reaped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.config import Settings
from bot.db.models import Attempt, DeliveryState, Repository, Train, WebhookDelivery
from bot.forge.client import GiteaClient
from bot.logs import get_logger
from bot.queue.model import ACTIVE_ATTEMPT_STATES
from bot.repos.managed import managed_names

log = get_logger(__name__)
STAGING_PREFIX = "merge-bot/"


@dataclass
class Reaped:
    resumed: int = 0
    refs_deleted: int = 0
    deliveries_pruned: int = 0


class Reaper:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        forge: GiteaClient,
        clock: Clock,
        wake: Callable[[int], None],
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._forge = forge
        self._clock = clock
        self._wake = wake

    async def run(self) -> Reaped:
        reaped = Reaped()
        now = self._clock.now()
        async with self._sessions() as session:
            expired = (
                await session.execute(
                    select(Attempt.train_id).where(
                        Attempt.state.in_([s.value for s in ACTIVE_ATTEMPT_STATES]),
                        (Attempt.lease_expires_at.is_(None)) | (Attempt.lease_expires_at < now),
                    )
                )
            ).scalars()
            for train_id in set(expired):
                reaped.resumed += 1
                self._wake(train_id)
        for full_name in await self._with_attempts():
            try:
                reaped.refs_deleted += await self._staging_refs(full_name)
            except Exception as exc:
                log.warning("reap.refs_failed", repo=full_name, error=str(exc))
        cutoff = now - timedelta(days=self._settings.delivery_retention_days)
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(WebhookDelivery).where(
                    WebhookDelivery.state == DeliveryState.DONE.value, WebhookDelivery.processed_at < cutoff
                )
            )
            reaped.deliveries_pruned = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if reaped.resumed or reaped.refs_deleted or reaped.deliveries_pruned:
            log.info(
                "reap.done",
                resumed=reaped.resumed,
                refs_deleted=reaped.refs_deleted,
                deliveries_pruned=reaped.deliveries_pruned,
            )
        return reaped

    async def _with_attempts(self) -> list[str]:
        """The repositories named in the settings, and the discovered ones that ever had an attempt: only those
        can hold a staging branch of this bot (with many discovered repositories, the others cost no call)."""
        async with self._sessions() as session:
            managed = {name.lower() for name in await managed_names(session, self._settings)}
            rows = await session.execute(
                select(Repository.owner, Repository.name)
                .join(Train, Train.repository_id == Repository.id)
                .join(Attempt, Attempt.train_id == Train.id)
                .distinct()
            )
            found = {f"{o}/{n}" for o, n in rows if f"{o}/{n}".lower() in managed}
        return sorted({*self._settings.explicit_repos, *found})

    async def _staging_refs(self, full_name: str) -> int:
        owner, name = full_name.split("/")
        staging = [b for b in await self._forge.branch_names(owner, name) if b.startswith(STAGING_PREFIX)]
        if not staging:
            return 0
        async with self._sessions() as session:
            live = set(
                (
                    await session.execute(
                        select(Attempt.ref)
                        .join(Train, Train.id == Attempt.train_id)
                        .join(Repository, Repository.id == Train.repository_id)
                        .where(
                            Repository.owner == owner,
                            Repository.name == name,
                            Attempt.state.in_([s.value for s in ACTIVE_ATTEMPT_STATES]),
                        )
                    )
                ).scalars()
            )
        deleted = 0
        for branch in staging:
            if f"refs/heads/{branch}" in live:
                continue
            if await self._forge.delete_branch(owner, name, branch):
                deleted += 1
                log.info("reap.staging_ref_deleted", repo=full_name, branch=branch)
        return deleted
