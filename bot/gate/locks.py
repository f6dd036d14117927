"""The per-train lock: ``pg_try_advisory_lock(NAMESPACE, train_id)`` on a dedicated connection.

The connection is not from the pool (a session lock on a pooled connection would be re-entrant for its
next user) and lives exactly as long as the gate's run: losing it means losing the lock. A heartbeat
pings it; :meth:`TrainLock.check` raises :class:`LockLost` the moment it is gone, and the gate calls it
before every write to the forge, so a gate that lost its lock stops writing at once
(docs/faults.md #5 and #7).
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

NAMESPACE = 0x6D62  # "mb": the first key of every train lock (the second is the train's id)
JOBS_NAMESPACE = 0x6D63  # the first key of the scheduler's once-per-cluster job locks: never a train


class LockLost(RuntimeError):
    """The gate's lock connection is gone; another process may hold the train now."""


def asyncpg_dsn(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


class TrainLock:
    def __init__(self, connection: asyncpg.Connection, train_id: int, heartbeat: float) -> None:
        self.train_id = train_id
        self._connection = connection
        self._lost = asyncio.Event()
        self._use = asyncio.Lock()
        connection.add_termination_listener(lambda _conn: self._lost.set())
        self._heartbeat = asyncio.create_task(self._beat(heartbeat), name=f"lock-heartbeat-{train_id}")

    @classmethod
    async def try_acquire(cls, url: str, train_id: int, *, heartbeat: float = 2.0) -> TrainLock | None:
        """The lock, or None when another session holds it."""
        connection = await asyncpg.connect(
            asyncpg_dsn(url), server_settings={"application_name": f"merge-bot gate {train_id}"}
        )
        try:
            acquired = await connection.fetchval("SELECT pg_try_advisory_lock($1, $2)", NAMESPACE, train_id)
        except BaseException:
            await connection.close()
            raise
        if not acquired:
            await connection.close()
            return None
        return cls(connection, train_id, heartbeat)

    @property
    def alive(self) -> bool:
        return not self._lost.is_set() and not self._connection.is_closed()

    async def check(self) -> None:
        """Prove the lock is still ours (a round trip on its connection), or raise LockLost."""
        if not self.alive:
            raise LockLost(f"lock on train {self.train_id} was lost")
        try:
            async with self._use, asyncio.timeout(5):
                await self._connection.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            self._lost.set()
            raise LockLost(f"lock on train {self.train_id} was lost: {type(exc).__name__}") from None

    async def _beat(self, every: float) -> None:
        while not self._lost.is_set():
            await asyncio.sleep(every)
            with contextlib.suppress(LockLost):
                await self.check()

    async def release(self) -> None:
        self._heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._heartbeat
        if not self._connection.is_closed():
            with contextlib.suppress(Exception):
                async with self._use:
                    await self._connection.execute("SELECT pg_advisory_unlock($1, $2)", NAMESPACE, self.train_id)
            with contextlib.suppress(Exception):
                await self._connection.close()
        self._lost.set()
