"""Cross-process wake-ups over PostgreSQL LISTEN/NOTIFY.

A delivery stored by one process wakes the inbox worker of whichever process listens first; an event for
a train wakes the gate of whichever process holds that train's lock. Notifications only make things
faster: every loop also polls, so a lost notification (a reconnect) delays work, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.gate.locks import asyncpg_dsn
from bot.logs import get_logger

log = get_logger(__name__)
INBOX = "merge_bot_inbox"
TRAIN = "merge_bot_train"


async def notify(engine: AsyncEngine, channel: str, payload: str = "") -> None:
    async with engine.begin() as connection:
        await connection.execute(select(func.pg_notify(channel, payload)))


class Listener:
    def __init__(self, url: str, handlers: Mapping[str, Callable[[str], None]], *, ping_seconds: float = 10.0) -> None:
        self._url = url
        self._handlers = handlers
        self._ping = ping_seconds

    async def run(self) -> None:
        delay = 1.0
        while True:
            connection: Any = None
            try:
                connection = await asyncpg.connect(
                    asyncpg_dsn(self._url), server_settings={"application_name": "merge-bot listener"}
                )
                for channel, handler in self._handlers.items():
                    await connection.add_listener(channel, _adapter(handler))
                delay = 1.0
                while True:  # the ping notices a dead connection; notifications arrive in between
                    await asyncio.sleep(self._ping)
                    await connection.fetchval("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("notify.listener_lost", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close()


def _adapter(handler: Callable[[str], None]) -> Callable[[Any, int, str, str], None]:
    def receive(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            handler(payload)
        except Exception:
            log.exception("notify.handler_failed")

    return receive
