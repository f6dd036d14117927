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

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

INBOX_CHANNEL = "merge_bot_inbox"


@dataclass(frozen=True, slots=True)
class NewDelivery:
    delivery_uuid: str
    event: str
    event_type: str
    action: str | None
    repository: str | None
    payload_json: str  # the body as received (valid JSON, UTF-8): stored as is, never re-serialised


class UnstorableDelivery(ValueError):
    """PostgreSQL refused a value of this delivery's payload; nothing of it was stored."""


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
        self._connections: dict[asyncio.Task[Any] | None, asyncpg.Connection] = {}

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
        for connection in self._connections.values():
            await connection.close()
        self._connections.clear()

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

    async def _connection(self) -> asyncpg.Connection:
        """This writer task's own connection, outside the pool: no pre-ping, no reset, one prepared statement."""
        task = asyncio.current_task()
        connection = self._connections.get(task)
        if connection is None or connection.is_closed():
            url = self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            connection = await asyncpg.connect(url, server_settings={"application_name": "merge-bot-inbox"})
            self._connections[task] = connection
        return connection

    async def _insert(self, deliveries: list[NewDelivery]) -> set[str]:
        """One statement, its own transaction: the rows are committed when it returns."""
        connection = await self._connection()
        records = await connection.fetch(
            INSERT_BATCH,
            [d.delivery_uuid for d in deliveries],
            [d.event for d in deliveries],
            [d.event_type for d in deliveries],
            [d.action for d in deliveries],
            [d.repository for d in deliveries],
            [d.payload_json for d in deliveries],
        )
        return {record[0] for record in records}

    async def _write(self, batch: list[tuple[NewDelivery, asyncio.Future[bool]]]) -> None:
        unique: dict[str, NewDelivery] = {}
        for delivery, _ in batch:
            unique.setdefault(delivery.delivery_uuid, delivery)
        failed: dict[str, BaseException] = {}
        inserted: set[str] = set()
        try:
            inserted = await self._insert(list(unique.values()))
        except asyncpg.DataError:
            # A value PostgreSQL refuses (NUL, a lone surrogate, a number beyond numeric's range) fails the
            # statement: store the others one by one, so that only the bad delivery is refused.
            for delivery in unique.values():
                try:
                    inserted |= await self._insert([delivery])
                except asyncpg.DataError as exc:
                    failed[delivery.delivery_uuid] = UnstorableDelivery(str(exc))
                except Exception as exc:
                    failed[delivery.delivery_uuid] = exc
        except Exception as exc:  # the requests answer 5xx; the forge may redeliver
            failed = dict.fromkeys(unique, exc)
        self.batches += 1
        self.stored += len(inserted)
        if inserted and self.on_stored is not None:
            self.on_stored()
        for delivery, future in batch:
            if future.done():  # the request went away (client disconnected)
                continue
            if delivery.delivery_uuid in failed:
                future.set_exception(failed[delivery.delivery_uuid])
                continue
            is_new = delivery.delivery_uuid in inserted
            inserted.discard(delivery.delivery_uuid)  # a second copy in the same batch is a duplicate
            future.set_result(is_new)


# A fixed statement for any batch size (prepared once per connection). NOTIFY is transactional and PostgreSQL
# folds identical notifications of one transaction into one.
INSERT_BATCH = f"""
WITH inserted AS (
    INSERT INTO webhook_deliveries (delivery_uuid, event, event_type, action, repository, payload)
    SELECT u, e, t, a, r, p::jsonb
    FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[], $6::text[])
        AS d(u, e, t, a, r, p)
    ON CONFLICT (delivery_uuid) WHERE delivery_uuid IS NOT NULL DO NOTHING
    RETURNING delivery_uuid
)
SELECT delivery_uuid, pg_notify('{INBOX_CHANNEL}', '') FROM inserted
"""
