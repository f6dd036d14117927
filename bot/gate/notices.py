"""What the people on a PR see of its train: the ``merge-bot`` status, comments, the queue label, and — once
an entry is final — the outcome, told exactly once even across crashes.

An entry becomes final in one transaction and is told after it (the status, one comment, the label off,
the branch deleted if configured; a merge or a rejection also goes to the outbox for chat and mail,
``bot.notifications``); ``entries.told_at`` is set only when that is done. Cut short between the
two (a crash, the forge failing), the entry stays untold, and whoever holds the train next tells it again
(:meth:`Notices.tell_untold`, on every pass of the gate). The outcome comment carries a hidden marker with
the entry's id, so telling again never posts a second comment when the first one did get through.

Every write is made only once the train lock is proven, so a gate that lost its lock posts nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.config import Settings
from bot.db import queries
from bot.db.models import Entry, PullRequest, Repository
from bot.forge import errors
from bot.forge.client import GiteaClient
from bot.gate.locks import TrainLock
from bot.gate.strategies import plan_for
from bot.logs import get_logger
from bot.notifications import enqueue, targets, text
from bot.queue import messages
from bot.queue.model import EntryState, Reason, Strategy

log = get_logger(__name__)
GIVE_UP_AFTER = timedelta(hours=1)  # an outcome the forge refuses this long is logged and dropped
RETRY_FIRST = timedelta(seconds=5)  # then as long again as the outcome is old, up to RETRY_MAX
RETRY_MAX = timedelta(minutes=5)
UNTOLD_BATCH = 20


def outcome_marker(entry_id: int) -> str:
    """Hidden in the outcome comment (Gitea's markdown does not render HTML comments)."""
    return f"<!-- merge-bot outcome of entry {entry_id} -->"


def status_target(entry: Entry, pull: PullRequest, strategy: Strategy | None) -> str | None:
    """The commit whose ``merge-bot`` status shows the outcome: the head the PR had when it was judged.

    A PR merged with ``pr-branch`` has the tested candidate as its head; otherwise the approved head. A
    failure shows on the PR's head at the time; a PR merged by hand gets no status (it is not ours to judge).
    """
    if entry.state == EntryState.MERGED:
        return plan_for(strategy).merged_head(entry) if strategy is not None else entry.approved_sha
    if entry.state == EntryState.FAILED:
        return str((entry.reason_detail or {}).get("status_sha") or pull.head_sha)
    if entry.reason == Reason.PR_MERGED_OUTSIDE.value:
        return None
    return entry.approved_sha


class Notices:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        forge: GiteaClient,
        clock: Clock,
        lock: TrainLock,
        train_id: int,
        queue_url: Callable[[Repository, int], str],
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.forge = forge
        self.clock = clock
        self.lock = lock
        self.train_id = train_id
        self.queue_url = queue_url
        self._label_id: int | None = None

    # -- outcomes ---------------------------------------------------------------------------------

    async def tell(self, repo: Repository, entry: Entry, pull: PullRequest, *, again: bool = False) -> bool:
        """Tell the PR its final entry's outcome and record that it was told; False when the forge refused
        part of it (it is told again later). ``again``: an earlier try may have posted the comment already."""
        assert entry.state not in (EntryState.WAITING, EntryState.QUEUED, EntryState.TESTING)
        reason = Reason(entry.reason) if entry.reason else Reason.MERGED
        detail = dict(entry.reason_detail or {})
        strategy = Strategy(detail["strategy"]) if detail.get("strategy") else None
        body = messages.outcome_comment(reason, detail, queue_url=self.queue_url(repo, pull.number))
        marker = outcome_marker(entry.id)
        # Told late, the PR may have been queued again since: its status and label are the new entry's now.
        superseded = again and await self._superseded(entry)
        posted = True
        sha = status_target(entry, pull, strategy)
        if sha and not superseded:
            state = "success" if entry.state == EntryState.MERGED else "failure"
            posted &= await self.status(repo, pull, sha, state, messages.status_description(reason, detail))
        if not (again and await self._commented(repo, pull, body, marker)):
            posted &= await self.comment(repo, pull, f"{body}\n\n{marker}")
        if not superseded:
            await self._drop_label(repo, entry, pull)
        if (
            entry.state == EntryState.MERGED
            and self.settings.delete_branch_after_merge
            and strategy is not None
            and plan_for(strategy).deletes_merged_branch
            and _same_repo(repo, pull)
        ):
            await self._delete_merged_branch(repo, pull, entry.approved_sha)
        now = self.clock.now()
        finished = entry.finished_at or now
        values: dict[str, Any] = {"told_at": now}
        if not posted and now - finished < GIVE_UP_AFTER:
            # Tried again later (whoever holds the train then), spaced out as the outcome gets older; on the
            # database's clock, which is the one that decides when it is due (``queries.untold_due``).
            delay = min(max(now - finished, RETRY_FIRST), RETRY_MAX)
            values = {"tell_after": func.now() + delay}
            log.warning("gate.tell_deferred", train=self.train_id, entry=entry.id, retry_in_s=delay.total_seconds())
        elif not posted:
            log.warning("gate.tell_gave_up", train=self.train_id, entry=entry.id, since=finished.isoformat())
        told = text.outcome(self.settings, repo, entry, pull, self.queue_url(repo, pull.number))
        async with self.sessions.begin() as session:
            await session.execute(update(Entry).where(Entry.id == entry.id).values(**values))
            if told is not None:  # chat and mail, sent in the background; keyed by the entry, so told once
                await enqueue(session, targets(self.settings), told, now=now)
        return posted

    async def tell_untold(self, skip: Collection[int] = ()) -> int:
        """Tell the train's final entries that were never told (a crash or the forge cut it short, or the gate
        put it off until its next attempt was under way); ``skip``: entries not to tell yet."""
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(Entry, PullRequest, Repository)
                    .join(PullRequest, PullRequest.id == Entry.pull_request_id)
                    .join(Repository, Repository.id == PullRequest.repository_id)
                    .where(Entry.train_id == self.train_id, queries.untold_due(), Entry.id.not_in(list(skip)))
                    .order_by(Entry.id)
                    .limit(UNTOLD_BATCH)
                )
            ).all()
        told = 0
        for entry, pull, repo in rows:
            log.info("gate.telling_again", train=self.train_id, entry=entry.id, state=entry.state)
            told += await self.tell(repo, entry, pull, again=True)
        return told

    async def _commented(self, repo: Repository, pull: PullRequest, body: str, marker: str) -> bool:
        """Whether the outcome comment is there already: with its marker, or (posted by a version of the bot
        from before the markers, during a rolling upgrade) as exactly the same text."""
        try:
            found = await self.forge.list_comments(repo.owner, repo.name, pull.number)
        except errors.ForgeError as exc:
            log.warning("gate.comments_unreadable", train=self.train_id, pull=pull.number, error=str(exc))
            return False  # a second comment is better than none
        return any(marker in comment.body or comment.body.strip() == body.strip() for comment in found)

    async def _superseded(self, entry: Entry) -> bool:
        async with self.sessions() as session:
            query = select(Entry.id).where(Entry.pull_request_id == entry.pull_request_id, Entry.id > entry.id)
            return (await session.execute(query.limit(1))).first() is not None

    async def _delete_merged_branch(self, repo: Repository, pull: PullRequest, merged_head: str) -> None:
        """``delete_branch_after_merge``: only while the branch still holds the head that was merged, so a
        branch pushed again (or re-created under the same name) since is never deleted."""
        try:
            head = await self.forge.branch_sha(repo.owner, repo.name, pull.head_ref)
        except errors.NotFound:
            return
        except errors.ForgeError as exc:
            log.warning("gate.branch_unreadable", train=self.train_id, branch=pull.head_ref, error=str(exc))
            return
        if head == merged_head:
            await self.best_effort(self.forge.delete_branch, repo.owner, repo.name, pull.head_ref)

    async def _drop_label(self, repo: Repository, entry: Entry, pull: PullRequest) -> None:
        """A PR queued by the label loses it when its entry ends (the outcome comment says why)."""
        label = self.settings.queue_label
        if entry.trigger != "label" or label not in (pull.labels or []):
            return
        if self._label_id is None:
            try:
                self._label_id = (await self.forge.label_ids(repo.owner, repo.name)).get(label)
            except errors.ForgeError as exc:
                log.warning("gate.label_lookup_failed", error=str(exc))
        if self._label_id is not None:
            await self.best_effort(self.forge.remove_label, repo.owner, repo.name, pull.number, self._label_id)

    # -- posting ----------------------------------------------------------------------------------

    async def status(self, repo: Repository, pull: PullRequest, sha: str, state: str, description: str) -> bool:
        return await self.best_effort(
            self.forge.create_status,
            repo.owner,
            repo.name,
            sha,
            state=state,
            context=self.settings.status_context,
            description=description,
            target_url=self.queue_url(repo, pull.number),
        )

    async def comment(self, repo: Repository, pull: PullRequest, body: str) -> bool:
        return await self.best_effort(self.forge.comment, repo.owner, repo.name, pull.number, body)

    async def best_effort(self, call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> bool:
        """Statuses and comments inform; failing to post one never blocks the queue (False says it failed).
        The call is made only once the lock is proven, so a gate that lost its lock writes nothing."""
        await self.lock.check()
        try:
            await call(*args, **kwargs)
        except errors.ForgeError as exc:
            log.warning("gate.notify_failed", train=self.train_id, error=str(exc))
            return False
        return True


def _same_repo(repo: Repository, pull: PullRequest) -> bool:
    return not pull.head_repo or pull.head_repo.lower() == f"{repo.owner}/{repo.name}".lower()
