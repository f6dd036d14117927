"""The sender: a background job that sends what is due in the outbox and records what came of it.

Run by the scheduler (``bot/scheduler/jobs.py``, once across all processes per tick). Each due row is sent
to its target through apprise (``bot.notifications.transport``: in a thread, bounded by ``timeout``), a few
at a time so that one hanging receiver does not hold up the others. A sent row is marked sent; a failed one
is tried again after a delay that doubles each time (:class:`Backoff`), and marked failed after the last
try. Stored and logged errors have every secret of the target URL replaced. A crash between sending and
recording sends that message once more: delivery is at least once.

The target of a row is found again by its place in the URL list for its repository (``urls_for``, the same
list :func:`bot.notifications.outbox.targets` gave when it was enqueued); a list changed since so that the
place holds another URL fails the row instead of sending it somewhere it was not meant for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.db.models import Notification, NotificationState
from bot.logs import REDACTOR, get_logger
from bot.notifications import transport, urls
from bot.notifications.outbox import SEVERITY, Kind

log = get_logger(__name__)
ERROR_LIMIT = 1000
SEND_SECONDS = 5.0  # how often the scheduler looks for due messages
UrlsFor = Callable[[str | None], Sequence[str]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Try ``tries`` times in all; after the n-th failed try wait ``first`` · 2ⁿ⁻¹, at most ``most``."""

    first: timedelta = timedelta(seconds=30)
    most: timedelta = timedelta(hours=1)
    tries: int = 8

    def delay(self, failed: int) -> timedelta:
        return min(self.first * (1 << min(max(failed - 1, 0), 30)), self.most)


@dataclass
class Sent:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    ids: list[int] = field(default_factory=list)


class Sender:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        urls_for: UrlsFor,
        *,
        backoff: Backoff | None = None,
        timeout: float = 10.0,
        batch: int = 50,
        parallel: int = 4,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._urls_for = urls_for
        self._backoff = backoff or Backoff()
        self._timeout = timeout
        self._batch = batch
        self._parallel = asyncio.Semaphore(parallel)

    async def run(self) -> Sent:
        """Send every row that is due now (up to ``batch``); what came of them."""
        async with self._sessions() as session:
            due = list(
                (
                    await session.execute(
                        select(Notification)
                        .where(
                            Notification.state == NotificationState.PENDING.value,
                            Notification.next_try_at <= self._clock.now(),
                        )
                        .order_by(Notification.next_try_at, Notification.id)
                        .limit(self._batch)
                    )
                ).scalars()
            )
        done = Sent()
        for row, state in zip(due, await asyncio.gather(*(self._one(row) for row in due)), strict=True):
            done.ids.append(row.id)
            if state is NotificationState.SENT:
                done.sent += 1
            elif state is NotificationState.FAILED:
                done.failed += 1
            else:
                done.retrying += 1
        return done

    def _target(self, row: Notification) -> str | None:
        found = list(self._urls_for(row.repository))
        if row.target_index < len(found) and urls.redact(found[row.target_index]) == row.target:
            return found[row.target_index]
        return None

    async def _one(self, row: Notification) -> NotificationState:
        url = self._target(row)
        if url is None:  # not worth trying again: the list changed under it
            return await self._record(row, None, f"target #{row.target_index} ({row.target}) is not configured now")
        async with self._parallel:
            outcome = await transport.send(
                url, row.title, row.body, severity=SEVERITY[Kind(row.kind)], seconds=self._timeout
            )
        return await self._record(row, url, outcome.error, sent=outcome.sent)

    async def _record(self, row: Notification, url: str | None, error: str, *, sent: bool = False) -> NotificationState:
        now = self._clock.now()
        tries = row.attempts + 1
        values: dict[str, Any] = {"attempts": tries}
        facts: dict[str, Any] = {"id": row.id, "kind": row.kind, "target": row.target, "attempts": tries}
        if sent:
            state = NotificationState.SENT
            values.update(state=state.value, sent_at=now, last_error=None)
            log.info("notification.sent", **facts)
        else:
            cleaned = REDACTOR.scrub(urls.scrub(error, [url] if url else []))[:ERROR_LIMIT]
            values["last_error"] = cleaned
            if url is None or tries >= self._backoff.tries:
                state = NotificationState.FAILED
                values["state"] = state.value
                log.warning("notification.failed", error=cleaned, **facts)
            else:
                state = NotificationState.PENDING
                delay = self._backoff.delay(tries)
                values["next_try_at"] = now + delay
                log.info("notification.retry", error=cleaned, retry_in_s=delay.total_seconds(), **facts)
        async with self._sessions.begin() as session:
            await session.execute(
                update(Notification)
                .where(Notification.id == row.id, Notification.state == NotificationState.PENDING.value)
                .values(**values)
            )
        return state
