"""The webhook inbox writer: group commit of deliveries.

Each webhook request hands its delivery to :meth:`DeliveryWriter.store` and waits. A few writer tasks take
whatever has queued up since their last commit (one delivery when idle, hundreds under load), insert them
in one transaction with ``ON CONFLICT DO NOTHING`` on the delivery UUID, commit, and only then wake the
waiting requests. So every 202 is durable, and under load one commit serves many requests: the commit,
not the HTTP work, is what limits a one-row-per-request server (DESIGN.md, "Choices already measured").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.models import WebhookDelivery

INBOX_CHANNEL = "merge_bot_inbox"


@dataclass(frozen=True, slots=True)
class NewDelivery:
    delivery_uuid: str
    event: str
    event_type: str
    action: str | None
    repository: str | None
    payload: dict[str, Any]


class WriterClosed(RuntimeError):
    """The writer is shutting down and takes no more deliveries."""


class DeliveryWriter:
    def __init__(self, engine: AsyncEngine, *, writers: int = 2, max_batch: int = 500) -> None:
        self._engine = engine
        self._writers = writers
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[NewDelivery, asyncio.Future[bool]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.batches = 0
        self.stored = 0
        self.on_stored: Callable[[], None] | None = None

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name=f"inbox-writer-{n}") for n in range(self._writers)]

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self._closed = True
        await self._queue.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def store(self, delivery: NewDelivery) -> bool:
        """Persist ``delivery``; True when it is new, False when its UUID was already stored."""
        if self._closed:
            raise WriterClosed("the inbox writer is closed")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((delivery, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[tuple[NewDelivery, asyncio.Future[bool]]]) -> None:
        unique: dict[str, NewDelivery] = {}
        for delivery, _ in batch:
            unique.setdefault(delivery.delivery_uuid, delivery)
        rows = [
            {
                "delivery_uuid": d.delivery_uuid,
                "event": d.event,
                "event_type": d.event_type,
                "action": d.action,
                "repository": d.repository,
                "payload": d.payload,
            }
            for d in unique.values()
        ]
        statement = (
            insert(WebhookDelivery)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["delivery_uuid"], index_where=text("delivery_uuid IS NOT NULL"))
            .returning(WebhookDelivery.delivery_uuid)
        )
        try:
            async with self._engine.begin() as connection:
                inserted = set((await connection.execute(statement)).scalars())
                if inserted:
                    await connection.execute(select(func.pg_notify(INBOX_CHANNEL, "")))
        except Exception as exc:  # the requests answer 5xx; the forge may redeliver
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        self.stored += len(inserted)
        if inserted and self.on_stored is not None:
            self.on_stored()
        for delivery, future in batch:
            if future.done():  # the request went away (client disconnected)
                continue
            is_new = delivery.delivery_uuid in inserted
            inserted.discard(delivery.delivery_uuid)  # a second copy in the same batch is a duplicate
            future.set_result(is_new)
