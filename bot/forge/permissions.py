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
        self,
        forge: GiteaClient,
        clock: Clock,
        *,
        allowed_users: tuple[str, ...] = (),
        allowed_teams: tuple[str, ...] = (),
        ttl_seconds: float = 30.0,
    ) -> None:
        self._forge = forge
        self._clock = clock
        self._allowed = {user.lower() for user in allowed_users}
        self._teams = tuple(allowed_teams)
        self._membership: dict[str, tuple[datetime, bool]] = {}
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

    @property
    def restricted(self) -> bool:
        return bool(self._allowed or self._teams)

    async def allowed(self, user: str, *, fresh: bool = False) -> bool:
        """On the allow-list (by name, or as a member of an allowed team); everyone when there is none."""
        if not self.restricted or user.lower() in self._allowed:
            return True
        now = self._clock.now()
        hit = self._membership.get(user.lower())
        if hit is not None and hit[1] and not fresh and now - hit[0] < self._ttl:
            return True  # only a membership is cached: someone just added to a team is let in at once
        member = False
        for team in self._teams:
            org, _, name = team.partition("/")
            if await self._forge.team_member(org, name, user):
                member = True
                break
        self._membership[user.lower()] = (now, member)
        return member

    async def may_merge(self, owner: str, repo: str, user: str, *, fresh: bool = False) -> bool:
        return await self.level(owner, repo, user, fresh=fresh) in WRITERS and await self.allowed(user, fresh=fresh)
