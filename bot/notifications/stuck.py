"""The stuck check: a scheduled job that tells when a train has work but nothing has moved for a while.

A train is stuck when it has entries in line or under test (``queued``, ``testing``; entries that wait for
dependencies or approvals wait by design), is not frozen or paused (nor outside the merge windows), and no
entry of it has had an event for ``stuck_minutes`` — counting from the later of its last event other than a
PR being queued (a merge, a failure, an attempt started, …) and the time its oldest entry in line was
queued, so a PR queued on an idle train starts the clock and more PRs arriving do not reset it. One message
per episode: the message's key names the train and the moment the stillness began, so the check finding
the same episode again adds nothing, and the next progress starts a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.db.models import Entry, EntryEvent, HoldRow, Repository, Train
from bot.logs import get_logger
from bot.notifications import text
from bot.notifications.outbox import enqueue
from bot.queue import windows
from bot.queue.model import EntryState

if TYPE_CHECKING:
    from bot.config import Settings

log = get_logger(__name__)
CHECK_SECONDS = 60.0  # how often the scheduler looks for stuck trains
WORK = (EntryState.QUEUED.value, EntryState.TESTING.value)
NOT_PROGRESS = ("queued", "waiting")  # entry events that say a PR joined, not that the train moved


class StuckCheck:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        urls_for: Callable[[str | None], Sequence[str]],
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._clock = clock
        self._urls_for = urls_for

    async def run(self) -> int:
        """Enqueue a message for each train newly found stuck; how many messages were added."""
        now = self._clock.now()
        open_now = windows.is_open(windows.parse_all(self._settings.windows), now)
        if self._settings.stuck_minutes <= 0 or not open_now:
            return 0  # outside the merge windows every train is frozen
        cutoff = now - timedelta(minutes=self._settings.stuck_minutes)
        work = (
            select(Entry.train_id, func.count().label("waiting"), func.min(Entry.queued_at).label("oldest"))
            .where(Entry.state.in_(WORK))
            .group_by(Entry.train_id)
            .subquery()
        )
        moved = (
            select(Entry.train_id, func.max(EntryEvent.at).label("at"))
            .join(EntryEvent, EntryEvent.entry_id == Entry.id)
            .where(Entry.train_id.in_(select(work.c.train_id)), EntryEvent.kind.not_in(NOT_PROGRESS))
            .group_by(Entry.train_id)
            .subquery()
        )
        held = select(HoldRow.id).where(  # a frozen or paused train stands still on purpose
            HoldRow.repository_id == Train.repository_id,
            or_(HoldRow.branch.is_(None), HoldRow.branch == Train.branch),
            HoldRow.lifted_at.is_(None),
            or_(HoldRow.until.is_(None), HoldRow.until > now),
        )
        since = func.greatest(func.coalesce(moved.c.at, work.c.oldest), work.c.oldest)
        query = (
            select(Train.id, Train.branch, Repository.owner, Repository.name, work.c.waiting, since.label("since"))
            .join(work, work.c.train_id == Train.id)
            .join(Repository, Repository.id == Train.repository_id)
            .outerjoin(moved, moved.c.train_id == Train.id)
            .where(Train.paused.is_(False), ~held.exists(), since <= cutoff)
            .order_by(Train.id)
        )
        added = 0
        async with self._sessions.begin() as session:
            for train_id, branch, owner, name, waiting, began in (await session.execute(query)).all():
                repository = f"{owner}/{name}"
                message = text.stuck(self._settings, repository, branch, train_id, waiting, began, now)
                count = await enqueue(session, self._urls_for(repository), message, now=now)
                if count:
                    log.warning("notification.train_stuck", train=train_id, repository=repository, since=began)
                added += count
        return added
