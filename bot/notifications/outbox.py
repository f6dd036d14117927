"""The outbox: whoever has an event to tell writes it here, in its own transaction; nothing is sent here.

:func:`enqueue` is the only way in: one ``notifications`` row per target URL, pending, due now. The
background sender (``bot.notifications.sender``) sends them, so a slow or dead chat server never holds up
the one who told. The URLs are the global ``notify_urls`` plus, for a repository, whatever extra list the
caller passes (:func:`targets`); the sender resolves a row's target the same way, by its place in that list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Notification, NotificationKind, NotificationState
from bot.notifications.urls import redact

if TYPE_CHECKING:
    from bot.config import Settings

Kind = NotificationKind
SEVERITY = {
    Kind.MERGED: "success",
    Kind.REJECTED: "failure",
    Kind.FROZEN: "warning",
    Kind.UNFROZEN: "info",
    Kind.STUCK: "warning",
    Kind.CONFIG_BROKEN: "failure",
}


@dataclass(frozen=True, slots=True)
class Message:
    """What to tell. ``key``: an event that may be enqueued again (told again after a crash, seen again by a
    periodic check) carries a key, and a key is sent once per target however often it is enqueued."""

    kind: Kind
    title: str
    body: str
    link: str | None = None
    repository: str | None = None  # owner/name, or None for the bot as a whole
    train_id: int | None = None
    entry_id: int | None = None
    pull_number: int | None = None
    key: str | None = None


def targets(settings: Settings, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The URLs an event goes to: the global ``notify_urls``, then ``extra`` (a repository's own list) less
    the ones already there."""
    configured = [url.get_secret_value() for url in settings.notify_urls]
    return tuple(dict.fromkeys([*configured, *extra]))


async def enqueue(session: AsyncSession, urls: Sequence[str], message: Message, *, now: datetime) -> int:
    """Add ``message`` for each of ``urls`` to the outbox in the caller's transaction; the number of rows
    added (0 without URLs, or when the message's key was enqueued before)."""
    if not urls:
        return 0
    rows = [
        {
            "kind": message.kind.value,
            "state": NotificationState.PENDING.value,
            "repository": message.repository,
            "train_id": message.train_id,
            "entry_id": message.entry_id,
            "pull_number": message.pull_number,
            "title": message.title,
            "body": message.body,
            "link": message.link,
            "key": message.key,
            "target_index": index,
            "target": redact(url),
            "next_try_at": now,
            "created_at": now,
        }
        for index, url in enumerate(urls)
    ]
    statement = insert(Notification).values(rows)
    if message.key is not None:
        statement = statement.on_conflict_do_nothing(
            index_elements=["key", "target_index"], index_where=Notification.key.is_not(None)
        )
    result = await session.execute(statement.returning(Notification.id))
    return len(result.all())
