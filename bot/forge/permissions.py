"""Who may drive the queue: write, admin or owner on the repository at that moment, cached briefly, and
on the allow-list when there is one (the bot's, or the one a repository's own file sets: :class:`AllowList`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bot.clock import Clock
from bot.forge.client import GiteaClient

WRITERS = frozenset({"write", "admin", "owner"})
ADMINS = frozenset({"admin", "owner"})


class _Lists(Protocol):
    @property
    def allowed_users(self) -> tuple[str, ...]: ...
    @property
    def allowed_teams(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class AllowList:
    """Users (by name) and org/teams who may queue; with neither, anyone with write access may."""

    users: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()

    @classmethod
    def of(cls, settings: _Lists) -> AllowList:
        return cls(tuple(settings.allowed_users), tuple(settings.allowed_teams))

    @property
    def restricted(self) -> bool:
        return bool(self.users or self.teams)


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
        self.default = AllowList(tuple(allowed_users), tuple(allowed_teams))
        self._membership: dict[tuple[str, tuple[str, ...]], tuple[datetime, bool]] = {}
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
        return self.default.restricted

    async def allowed(self, user: str, *, fresh: bool = False, allow: AllowList | None = None) -> bool:
        """On the allow-list (by name, or as a member of an allowed team); everyone when there is none."""
        rules = allow or self.default
        if not rules.restricted or user.lower() in {name.lower() for name in rules.users}:
            return True
        now = self._clock.now()
        key = (user.lower(), rules.teams)
        hit = self._membership.get(key)
        if hit is not None and hit[1] and not fresh and now - hit[0] < self._ttl:
            return True  # only a membership is cached: someone just added to a team is let in at once
        member = False
        for team in rules.teams:
            org, _, name = team.partition("/")
            if await self._forge.team_member(org, name, user):
                member = True
                break
        self._membership[key] = (now, member)
        return member

    async def may_merge(
        self, owner: str, repo: str, user: str, *, fresh: bool = False, allow: AllowList | None = None
    ) -> bool:
        """Write access or more, and on ``allow`` (default: the bot's own allow-list)."""
        level = await self.level(owner, repo, user, fresh=fresh)
        return level in WRITERS and await self.allowed(user, fresh=fresh, allow=allow)
