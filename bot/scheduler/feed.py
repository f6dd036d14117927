"""Which managed repositories a reconciler pass must read, and which of their pull requests: what changed.

Per owner of managed repositories, one paged read of the change feed (``GET /repos/issues/search?type=pulls
&state=all&owner=O&since=T``) names the pull requests updated since the last read; a pull request whose
``updated_at`` is no newer than the one the bot stored for it (from a webhook or an earlier pass) is not read
again. ``T`` is the forge's own time of the last read (its ``Date`` header), less :data:`FEED_LAG` for the
forge's issue indexer, which indexes a change a moment after it is made. So an idle pass costs one call per
owner, whatever the number of repositories and pull requests.

A repository is read in full (every open pull request, as the first pass does) when it was never reconciled,
when its last pass failed, or when its owner's feed cannot be read; the cursor of an owner moves only after
its repositories' passes were made (:meth:`Plan.commit`), so a crash in between reads the same changes again.

Gitea's JSON API sends no ``ETag`` on these listings (only blobs, raw files and attachments are served with
one, through ``modules/httpcache``): conditional requests would save nothing here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db import queries
from bot.db.models import PullRequest, Repository
from bot.forge.client import ChangedPull, GiteaClient
from bot.forge.errors import ForgeError
from bot.logs import get_logger
from bot.repos.patterns import owner_of

log = get_logger(__name__)
FEED_LAG = timedelta(seconds=30)
SECOND = timedelta(seconds=1)
CURSOR_PREFIX = "feed:"


@dataclass
class Plan:
    """``full``: repositories read in full; ``changed``: repository → the numbers of its changed pull
    requests; ``since``: per repository, from when its comments are read; ``cursors``: where each owner's
    feed stands once the passes are made."""

    full: set[str] = field(default_factory=set)
    changed: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    since: dict[str, datetime] = field(default_factory=dict)
    cursors: dict[str, datetime] = field(default_factory=dict)

    def repositories(self) -> list[tuple[str, set[int] | None]]:
        """(name, None) for a full pass, (name, numbers) for a pass over those pull requests only."""
        shown: list[tuple[str, set[int] | None]] = [(name, None) for name in sorted(self.full)]
        shown += [(name, numbers) for name, numbers in sorted(self.changed.items()) if name not in self.full]
        return shown

    async def commit(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions.begin() as session:
            for owner, at in self.cursors.items():
                await queries.set_cursor(session, CURSOR_PREFIX + owner, at)


def changed(
    items: list[ChangedPull], stored: dict[tuple[str, int], datetime | None], previous: datetime
) -> dict[str, set[int]]:
    """The pull requests of ``items`` (repository names → numbers) newer than what is stored.

    Gitea keeps times to the second, so an item as new as the stored state may still hide a change made later
    in that same second: it counts as changed unless that second had ended before the previous feed read
    (``previous``), whose pass read every item of that second afresh after it had ended."""
    found: dict[str, set[int]] = defaultdict(set)
    for item in items:
        key = (item.repository.lower(), item.number)
        if key not in stored:
            continue  # not a managed repository
        known, at = stored[key], item.updated_at
        if known is None or at is None or at > known or (at == known and at >= previous - SECOND):
            found[item.repository].add(item.number)
    return found


async def plan(
    sessions: async_sessionmaker[AsyncSession], forge: GiteaClient, managed: list[str], now: datetime
) -> Plan:
    result = Plan()
    by_owner: dict[str, list[str]] = defaultdict(list)
    for name in managed:
        by_owner[owner_of(name).lower()].append(name)
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Repository.owner, Repository.name, Repository.reconciled_at, Repository.needs_full_pass)
            )
        ).all()
        known = {f"{o}/{n}".lower(): (at, again) for o, n, at, again in rows}
        cursors = {owner: await queries.cursor(session, CURSOR_PREFIX + owner) for owner in by_owner}
    for owner, names in sorted(by_owner.items()):
        for name in names:
            at, again = known.get(name.lower(), (None, False))
            if at is None or again:
                result.full.add(name)
        last = cursors[owner]
        since = (last - FEED_LAG) if last is not None else now
        try:
            items, answered = await forge.changed_pulls(owner, since)
        except ForgeError as exc:
            log.warning("reconcile.feed_failed", owner=owner, error=str(exc), fallback="every repository in full")
            result.full.update(names)
            continue
        result.cursors[owner] = answered or now
        if last is None:
            result.full.update(names)  # the feed starts here: what came before is read in full
            continue
        stored = await _stored(sessions, {n.lower() for n in names}, items)
        for name, numbers in changed(items, stored, last).items():
            result.changed[_spelled(name, names)].update(numbers)
        for name in names:
            result.since[name] = since
    return result


def _spelled(name: str, names: list[str]) -> str:
    return next((n for n in names if n.lower() == name.lower()), name)


async def _stored(
    sessions: async_sessionmaker[AsyncSession], managed: set[str], items: list[ChangedPull]
) -> dict[tuple[str, int], datetime | None]:
    """For each item of a managed repository: the forge time stored for its pull request (None: unknown)."""
    wanted = {(item.repository.lower(), item.number) for item in items if item.repository.lower() in managed}
    if not wanted:
        return {}
    stored: dict[tuple[str, int], datetime | None] = dict.fromkeys(wanted)
    full_name = func.lower(Repository.owner + "/" + Repository.name)
    async with sessions() as session:
        rows = await session.execute(
            select(full_name, PullRequest.number, PullRequest.forge_updated_at)
            .join(Repository, Repository.id == PullRequest.repository_id)
            .where(tuple_(full_name, PullRequest.number).in_(list(wanted)))
        )
        for name, number, at in rows:
            stored[(str(name), int(number))] = at
    return stored
