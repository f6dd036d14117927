"""Discovery: which repositories the patterns of ``MERGE_BOT_REPOS`` name on the forge now, and what that
changes in the managed set.

Every ``discovery_seconds`` each pattern is listed in full (``owner/*``: ``GET /orgs/{org}/repos`` or
``/users/{user}/repos``; ``topic:NAME``: ``GET /repos/search?topic=true&q=NAME``). A repository is managed while
the bot's user administers it (``permissions.admin``) and it is not archived. In between, each reconciler pass
reads only what changed: the same listings through ``GET /repos/search`` sorted by ``updated``, newest first,
stopping at the first repository older than the last pass — a repository created, given the topic, archived,
or changed in its settings since shows up there at once. What such a listing cannot show (a repository deleted,
its topic removed, the bot's admin right taken away) is seen by the next full listing.

The managed set never shrinks on an error: a full listing that failed for any pattern removes nothing (what
the others found is still added), and an incremental listing only ever adds, or drops what it saw archived or
without admin. Deciding is pure (:func:`changes`); the listings (:func:`list_all`, :func:`list_recent`) and the
database (:func:`apply`) are the edges.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db import queries
from bot.db.models import Repository
from bot.forge.client import GiteaClient, RepoSummary
from bot.forge.errors import ForgeError, NotFound
from bot.logs import get_logger
from bot.repos.patterns import Exact, Owner, Pattern, matches

log = get_logger(__name__)


class Why(enum.StrEnum):
    """Why a discovered repository left the managed set (``repositories.unmanaged_reason``)."""

    DELETED = "deleted"
    ARCHIVED = "archived"
    ADMIN_LOST = "admin_lost"
    TOPIC_REMOVED = "topic_removed"
    NOT_MATCHED = "not_matched"  # moved to another owner, or the pattern left the settings


@dataclass
class Found:
    """What listings showed: the repositories to manage (lower-case name → the name and the pattern that
    matched it first), those seen but not eligible (→ why), and whether every pattern was listed in full."""

    eligible: dict[str, tuple[str, str]] = field(default_factory=dict)
    refused: dict[str, Why] = field(default_factory=dict)
    complete: bool = True
    owner_ids: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, pattern: Pattern, summary: RepoSummary) -> None:
        key = summary.full_name.lower()
        if summary.owner_id:
            self.owner_ids[summary.full_name.split("/")[0].lower()] = summary.owner_id
        if isinstance(pattern, Owner) and not matches(pattern, summary.full_name):
            return  # an owner's listing holds only its own repositories; this guards a forge that strays
        if summary.archived or not summary.admin:
            if key not in self.eligible:
                self.refused[key] = Why.ARCHIVED if summary.archived else Why.ADMIN_LOST
            return
        self.refused.pop(key, None)
        self.eligible.setdefault(key, (summary.full_name, str(pattern)))


@dataclass(frozen=True)
class Changes:
    added: tuple[tuple[str, str], ...]  # (full name, pattern)
    dropped: tuple[tuple[str, Why | None], ...]  # (full name, why; None: to be asked of the forge)


def changes(managed: Mapping[str, str], found: Found, explicit: Iterable[str] = ()) -> Changes:
    """``managed``: the discovered repositories managed now (lower-case name → name). A repository named one by
    one is never dropped; absence drops only after a complete listing."""
    named = {name.lower() for name in explicit}
    added = tuple(value for key, value in sorted(found.eligible.items()) if key not in managed)
    dropped: list[tuple[str, Why | None]] = []
    for key, name in sorted(managed.items()):
        if key in named or key in found.eligible:
            continue
        if key in found.refused:
            dropped.append((name, found.refused[key]))
        elif found.complete:
            dropped.append((name, None))
    return Changes(added, tuple(dropped))


async def list_all(forge: GiteaClient, patterns: Iterable[Pattern]) -> Found:
    found = Found()
    for pattern in patterns:
        if isinstance(pattern, Exact):
            continue
        try:
            if isinstance(pattern, Owner):
                listed = await forge.owner_listing(pattern.owner)
            else:
                listed = await forge.search_listing(topic=pattern.topic)
        except ForgeError as exc:
            found.complete = False
            found.errors.append(f"{pattern}: {exc}")
            log.warning("discovery.listing_failed", pattern=str(pattern), error=str(exc))
            continue
        for summary in listed:
            found.add(pattern, summary)
    return found


async def list_recent(
    forge: GiteaClient, patterns: Iterable[Pattern], newer_than: datetime, owner_ids: dict[str, int]
) -> Found:
    """What changed since ``newer_than`` (an incomplete listing: it never drops by absence). ``owner_ids`` is
    filled in as owners are looked up (``GET /users/{name}`` answers organisations too)."""
    found = Found(complete=False)
    for pattern in patterns:
        if isinstance(pattern, Exact):
            continue
        try:
            if isinstance(pattern, Owner):
                key = pattern.owner.lower()
                if key not in owner_ids:
                    owner_ids[key] = await forge.user_id(pattern.owner)
                listed = await forge.search_listing(uid=owner_ids[key], newer_than=newer_than)
            else:
                listed = await forge.search_listing(topic=pattern.topic, newer_than=newer_than)
        except ForgeError as exc:
            found.errors.append(f"{pattern}: {exc}")
            log.warning("discovery.recent_failed", pattern=str(pattern), error=str(exc))
            continue
        for summary in listed:
            found.add(pattern, summary)
    return found


async def why_gone(forge: GiteaClient, full_name: str, pattern: str) -> Why | None:
    """Why a repository a complete listing no longer shows left (None: the forge cannot say now)."""
    owner, name = full_name.split("/")
    try:
        data = await forge.get_repo(owner, name)
    except NotFound:
        return Why.DELETED
    except ForgeError:
        return None
    if data.get("archived"):
        return Why.ARCHIVED
    if not (data.get("permissions") or {}).get("admin"):
        return Why.ADMIN_LOST
    return Why.TOPIC_REMOVED if pattern.startswith("topic:") else Why.NOT_MATCHED


async def discovered(session: AsyncSession) -> dict[str, tuple[str, str]]:
    """The discovered repositories managed now: lower-case name → (name, pattern)."""
    rows = await session.execute(
        select(Repository.owner, Repository.name, Repository.discovered_by).where(
            Repository.discovered_by.is_not(None), Repository.unmanaged_at.is_(None)
        )
    )
    return {f"{o}/{n}".lower(): (f"{o}/{n}", str(p)) for o, n, p in rows}


async def add(session: AsyncSession, full_name: str, pattern: str) -> Repository:
    owner, name = full_name.split("/")
    repo = await queries.ensure_repository(session, owner, name)
    await session.execute(
        update(Repository)
        .where(Repository.id == repo.id)
        .values(discovered_by=pattern, unmanaged_at=None, unmanaged_reason=None, set_up_at=None)
    )
    return repo


async def drop(session: AsyncSession, full_name: str, why: Why, now: datetime) -> list[int]:
    """Mark the repository unmanaged; the ids of its trains (for their gates to wind them down)."""
    repo = await queries.find_repository(session, full_name)
    if repo is None:
        return []
    await session.execute(
        update(Repository)
        .where(Repository.id == repo.id, Repository.unmanaged_at.is_(None))
        .values(unmanaged_at=now, unmanaged_reason=why.value)
    )
    return await queries.train_ids(session, repo.id)
