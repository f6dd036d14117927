"""Who may drive the queue: write, admin or owner on the repository at that moment, cached briefly, and
on the configured allow-list when there is one."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.clock import Clock
from bot.forge.client import GiteaClient

WRITERS = frozenset({"write", "admin", "owner"})
ADMINS = frozenset({"admin", "owner"})


class Permissions:
    def __init__(
        self, forge: GiteaClient, clock: Clock, *, allowed_users: tuple[str, ...] = (), ttl_seconds: float = 30.0
    ) -> None:
        self._forge = forge
        self._clock = clock
        self._allowed = {user.lower() for user in allowed_users}
        self._ttl = timedelta(seconds=ttl_seconds)
        self._cache: dict[tuple[str, str, str], tuple[datetime, str]] = {}

    async def level(self, owner: str, repo: str, user: str, *, fresh: bool = False) -> str:
        key = (owner.lower(), repo.lower(), user.lower())
        now = self._clock.now()
        hit = self._cache.get(key)
        if hit is not None and not fresh and now - hit[0] < self._ttl:
            return hit[1]
        level = await self._forge.permission(owner, repo, user)
        self._cache[key] = (now, level)
        return level

    def allowed(self, user: str) -> bool:
        return not self._allowed or user.lower() in self._allowed

    async def may_merge(self, owner: str, repo: str, user: str, *, fresh: bool = False) -> bool:
        return self.allowed(user) and await self.level(owner, repo, user, fresh=fresh) in WRITERS
