"""The inbox worker: claims stored deliveries with ``FOR UPDATE SKIP LOCKED``, hands each to the intake,
marks it done; a failing one is retried with backoff and parked after ``max_tries`` with its error kept.

A claim is a lease (``next_try_at`` pushed into the future and committed), not a transaction held open
across forge calls: a worker that dies mid-delivery leaves the row to be claimed again when the lease
runs out. The intake is idempotent (commands are keyed by their source), so a second pass does nothing new.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.db.models import DeliveryState, WebhookDelivery
from bot.logs import get_logger

log = get_logger(__name__)
Handler = Callable[[str, Any], Awaitable[None]]


class InboxWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        handler: Handler,
        clock: Clock,
        *,
        batch: int = 20,
        lease_seconds: float = 120.0,
        max_tries: int = 8,
        poll_seconds: float = 1.0,
    ) -> None:
        self._sessions = sessions
        self._handler = handler
        self._clock = clock
        self._batch = batch
        self._lease = timedelta(seconds=lease_seconds)
        self._max_tries = max_tries
        self._poll = poll_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                handled = await self.run_once()
            except Exception:
                log.exception("inbox.claim_failed")
                handled = 0
            if handled == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll)
                self._wake.clear()

    async def run_once(self) -> int:
        """Claim and handle one batch; the number of deliveries handled."""
        now = self._clock.now()
        async with self._sessions.begin() as session:
            rows = (
                await session.execute(
                    select(
                        WebhookDelivery.id, WebhookDelivery.event_type, WebhookDelivery.payload, WebhookDelivery.tries
                    )
                    .where(WebhookDelivery.state == DeliveryState.PENDING.value, WebhookDelivery.next_try_at <= now)
                    .order_by(WebhookDelivery.id)
                    .limit(self._batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_([row.id for row in rows]))
                .values(next_try_at=now + self._lease, tries=WebhookDelivery.tries + 1)
            )
        for row in rows:
            await self._one(row.id, row.event_type, row.payload, row.tries + 1)
        return len(rows)

    async def _one(self, delivery_id: int, event_type: str, payload: Any, tries: int) -> None:
        try:
            await self._handler(event_type, payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            parked = tries >= self._max_tries
            delay = timedelta(seconds=min(2**tries, 300))
            values: dict[str, Any] = {"last_error": f"{type(exc).__name__}: {exc}"[:2000]}
            if parked:
                values["state"] = DeliveryState.PARKED.value
            else:
                values["next_try_at"] = self._clock.now() + delay
            log.warning(
                "inbox.delivery_failed", delivery=delivery_id, tries=tries, parked=parked, error=values["last_error"]
            )
            async with self._sessions.begin() as session:
                await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values))
            return
        async with self._sessions.begin() as session:
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id)
                .values(state=DeliveryState.DONE.value, processed_at=self._clock.now(), last_error=None)
            )
