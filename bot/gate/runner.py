"""Runs the gates of this process: one task per train with work, each under the train's lock.

Every tick it asks the database which trains have active entries or attempts, and starts a gate for each
one it is not already running. A gate whose lock another process holds ends at once and is tried again
next tick, so a train is picked up by whichever process gets to it — and only by one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

from bot.db import queries
from bot.gate.locks import LockLost, TrainLock
from bot.gate.service import Gate, GateDeps
from bot.logs import get_logger

log = get_logger(__name__)


class GateRunner:
    def __init__(self, deps: GateDeps, database_url: str, *, tick_seconds: float = 1.0) -> None:
        self._deps = deps
        self._url = database_url
        self._tick = tick_seconds
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._wakes: defaultdict[int, asyncio.Event] = defaultdict(asyncio.Event)
        self._any = asyncio.Event()
        self.lock_busy = 0  # times a train's lock was held by another process (exported as a metric)

    def wake(self, train_id: int) -> None:
        self._wakes[train_id].set()
        self._any.set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    async with self._deps.sessions() as session:
                        trains = await queries.trains_with_work(session)
                except Exception:
                    log.exception("gate_runner.query_failed")
                    trains = []
                for train_id in trains:
                    task = self._tasks.get(train_id)
                    if task is None or task.done():
                        self._tasks[train_id] = asyncio.create_task(self._train(train_id), name=f"gate-{train_id}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._any.wait(), self._tick)
                self._any.clear()
        finally:
            await self.close()

    async def _train(self, train_id: int) -> None:
        try:
            lock = await TrainLock.try_acquire(self._url, train_id)
        except Exception as exc:
            log.warning("gate_runner.lock_failed", train=train_id, error=str(exc))
            return
        if lock is None:
            self.lock_busy += 1
            return
        try:
            await Gate(self._deps, train_id, lock).run(self._wakes[train_id])
        except LockLost as exc:
            log.warning("gate_runner.lock_lost", train=train_id, error=str(exc))
        except Exception:
            log.exception("gate_runner.gate_crashed", train=train_id)
        finally:
            await lock.release()

    async def close(self) -> None:
        tasks = [task for task in self._tasks.values() if not task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
