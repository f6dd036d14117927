"""The reconciler: brings the database in line with the forge, through the same path as webhooks.

Each pass first runs discovery (``bot.scheduler.discover``: the managed set of ``owner/*`` and ``topic:``
patterns), then asks the change feed which repositories and pull requests changed (``bot.scheduler.feed``),
and reads only those: its forge calls grow with what changed, not with what exists.

A full pass over a repository (its first, one after a failed pass, or when its owner's feed cannot be read),
within a bounded number of API calls: every open PR is observed (head, state, the queue label — whose arrival
is attributed from the PR's timeline); PRs with active entries that are no longer open are read one by one
(closed or merged while the bot was not listening); comments newer than the last one seen go through the
intake as if their webhook had arrived (commands are keyed by comment id, so nothing acts twice). A pass over
the changed PRs of a repository reads each of them, their timelines and the comments since the feed's last
read. Then every train with work is woken.
The first pass on a repository only records where the comments stand: it does not act on history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.config import Settings
from bot.db import queries
from bot.db.models import Entry, PullRequest, Repository
from bot.forge import events
from bot.forge.client import GiteaClient
from bot.inbox.intake import Intake
from bot.logs import get_logger
from bot.queue.model import ACTIVE_ENTRY_STATES
from bot.repos.managed import managed_names
from bot.scheduler import feed
from bot.scheduler.discover import Discovered, Discovery
from bot.setup import Setup

log = get_logger(__name__)
COMMENT_MARGIN = timedelta(minutes=10)
MAX_TIMELINES = 30  # timeline reads per repository per pass, to bound the API calls


@dataclass
class Healed:
    pulls_changed: int = 0
    pulls_closed: int = 0
    commands_found: int = 0
    trains_woken: set[int] = field(default_factory=set)
    repositories_read: int = 0
    discovered: Discovered = field(default_factory=Discovered)

    def __bool__(self) -> bool:
        return bool(self.pulls_changed or self.pulls_closed or self.commands_found)


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        forge: GiteaClient,
        intake: Intake,
        clock: Clock,
        wake: Callable[[int], None],
        setup: Setup | None = None,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._forge = forge
        self._intake = intake
        self._clock = clock
        self._wake = wake
        self.discovery = Discovery(settings, sessions, forge, setup or Setup(forge, settings), wake)
        self.total = Healed()

    async def run(self) -> Healed:
        healed = Healed()
        now = self._clock.now()
        try:
            healed.discovered = await self.discovery.run(now)
        except Exception as exc:  # discovery's trouble never stops the passes over what is managed
            log.warning("reconcile.discovery_failed", error=str(exc))
        async with self._sessions() as session:
            managed = await managed_names(session, self._settings)
        plan = await feed.plan(self._sessions, self._forge, managed, now)
        for full_name, numbers in plan.repositories():
            owner, name = full_name.split("/")
            healed.repositories_read += 1
            try:
                await self.repository(owner, name, healed, only=numbers, comments_since=plan.since.get(full_name))
            except Exception as exc:  # one repository's trouble never stops the others
                log.warning("reconcile.repository_failed", repo=full_name, error=str(exc))
                await self._again(owner, name)
        await plan.commit(self._sessions)
        async with self._sessions() as session:
            trains = await queries.trains_with_work(session)
        for train_id in trains:
            healed.trains_woken.add(train_id)
            self._wake(train_id)
        if healed:
            log.info(
                "reconcile.healed",
                pulls_changed=healed.pulls_changed,
                pulls_closed=healed.pulls_closed,
                commands_found=healed.commands_found,
            )
        self.total.pulls_changed += healed.pulls_changed
        self.total.pulls_closed += healed.pulls_closed
        self.total.commands_found += healed.commands_found
        return healed

    async def repository(
        self,
        owner: str,
        name: str,
        healed: Healed,
        *,
        only: set[int] | None = None,
        comments_since: datetime | None = None,
    ) -> None:
        """A full pass over the repository, or, with ``only``, over those pull requests (the feed's)."""
        started = self._clock.now()
        async with self._sessions.begin() as session:
            repo = await queries.ensure_repository(session, owner, name)
            cached = await _cached_heads(session, repo.id)
            active = await _active_numbers(session, repo.id)
        ref = events.RepoRef(owner, name, repo.forge_id)
        if only is not None and repo.reconciled_at is not None:
            await self._changed(repo, ref, sorted(only), healed, comments_since)
            return
        open_numbers = set()
        pulls = await self._forge.list_pulls(owner, name, "open")
        for info in pulls:
            open_numbers.add(info.number)
            known = cached.get(info.number)
            changed = known is None or known[:2] != (info.head_sha, "open")
            if not changed and known is not None and known[2] != frozenset(info.labels):
                label = await self._intake.queue_label(owner, name, info.base_ref)  # the repository's file may name it
                changed = (label in known[2]) != (label in info.labels)
            if changed or info.number in active:  # an active entry's PR is held to its state every pass
                healed.pulls_changed += changed
                try:
                    await self._intake.pull_seen(ref, info, actor=None)
                except Exception as exc:  # one PR's trouble (e.g. the forge refusing its reads) never stops the rest
                    log.warning("reconcile.pull_failed", repo=f"{owner}/{name}", pull=info.number, error=str(exc))
        for number in sorted(active - open_numbers):
            info = await self._forge.get_pull(owner, name, number)
            healed.pulls_closed += 1
            await self._intake.pull_seen(ref, info, actor=None)
        await self._comments(repo, ref, healed)
        await self._buttons(ref, [info.number for info in pulls], healed)
        await self._passed(repo.id, started)

    async def _changed(
        self, repo: Repository, ref: events.RepoRef, numbers: list[int], healed: Healed, since: datetime | None
    ) -> None:
        """The feed's pull requests of this repository: each read and observed, its timeline read (the merge
        button), and the comments since the feed's last read."""
        started = self._clock.now()
        still_open = []
        for number in numbers:
            info = await self._forge.get_pull(ref.owner, ref.name, number)
            healed.pulls_changed += 1
            await self._intake.pull_seen(ref, info, actor=None)
            if info.state == "open" and not info.merged:
                still_open.append(number)
        await self._comments(repo, ref, healed, since=since)
        await self._buttons(ref, still_open, healed)
        await self._passed(repo.id, started)

    async def _passed(self, repository_id: int, started: datetime) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(Repository)
                .where(Repository.id == repository_id)
                .values(reconciled_at=started, needs_full_pass=False)
            )

    async def _again(self, owner: str, name: str) -> None:
        """The pass failed part way: the next one reads the whole repository."""
        try:
            async with self._sessions.begin() as session:
                await session.execute(
                    update(Repository)
                    .where(Repository.owner == owner, Repository.name == name)
                    .values(needs_full_pass=True)
                )
        except Exception as exc:
            log.warning("reconcile.mark_failed", repo=f"{owner}/{name}", error=str(exc))

    async def _comments(
        self, repo: Repository, ref: events.RepoRef, healed: Healed, *, since: datetime | None = None
    ) -> None:
        start = since if since is not None and repo.reconciled_at is not None else repo.reconciled_at
        since_text = (start - COMMENT_MARGIN).isoformat() if start else None
        comments = await self._forge.repo_comments(ref.owner, ref.name, since=since_text)
        newest = max((comment.id for comment in comments), default=repo.last_comment_id)
        if repo.last_comment_id == 0 and repo.reconciled_at is None:
            await self._seen(repo.id, newest)  # the first pass records, it does not replay history
            return
        for comment in comments:
            if comment.id <= repo.last_comment_id or not comment.is_pull or comment.number is None:
                continue
            event = events.CommentEvent(
                action="created",
                repo=ref,
                sender=comment.author,
                number=comment.number,
                is_pull=True,
                comment_id=comment.id,
                body=comment.body,
                author=comment.author,
                pull=None,
            )
            if await self._intake.comment_seen(event):
                healed.commands_found += 1
        await self._seen(repo.id, newest)

    async def _buttons(self, ref: events.RepoRef, numbers: list[int], healed: Healed) -> None:
        """Gitea sends no webhook for its "merge when checks succeed" button: read the timelines."""
        for number in numbers[:MAX_TIMELINES]:
            presses = [
                item
                for item in await self._forge.timeline(ref.owner, ref.name, number)
                if item.get("type") in ("pull_scheduled_merge", "pull_cancel_scheduled_merge")
            ]
            if not presses:
                continue
            last = presses[-1]
            user = str((last.get("user") or {}).get("login") or "")
            scheduled = last.get("type") == "pull_scheduled_merge"
            if user and await self._intake.button_seen(ref, number, int(last["id"]), user, scheduled):
                healed.commands_found += 1

    async def _seen(self, repository_id: int, comment_id: int) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(Repository)
                .where(Repository.id == repository_id, Repository.last_comment_id < comment_id)
                .values(last_comment_id=comment_id)
            )


async def _cached_heads(session: AsyncSession, repository_id: int) -> dict[int, tuple[str, str, frozenset[str]]]:
    """Each cached PR's head, state and labels: what a pass compares."""
    rows = await session.execute(
        select(PullRequest.number, PullRequest.head_sha, PullRequest.state, PullRequest.labels).where(
            PullRequest.repository_id == repository_id
        )
    )
    return {number: (head, state, frozenset(labels or ())) for number, head, state, labels in rows}


async def _active_numbers(session: AsyncSession, repository_id: int) -> set[int]:
    rows = await session.execute(
        select(PullRequest.number)
        .join(Entry, Entry.pull_request_id == PullRequest.id)
        .where(PullRequest.repository_id == repository_id, Entry.state.in_([s.value for s in ACTIVE_ENTRY_STATES]))
    )
    return {number for (number,) in rows}
