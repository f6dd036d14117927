"""APScheduler 3.x set-up. Each process runs its own scheduler; a job that must run once cluster-wide
takes ``pg_try_advisory_xact_lock`` first and skips its turn when another process holds it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.gate.locks import JOBS_NAMESPACE
from bot.logs import get_logger

log = get_logger(__name__)
Job = Callable[[], Awaitable[Any]]


def cluster_once(engine: AsyncEngine, key: int, name: str, job: Job) -> Job:
    """``job``, run only by the process that wins this tick's transaction-level advisory lock."""

    async def run() -> Any:
        async with engine.connect() as connection, connection.begin():
            got = await connection.scalar(
                text("SELECT pg_try_advisory_xact_lock(:ns, :key)"), {"ns": JOBS_NAMESPACE, "key": key}
            )
            if not got:
                log.debug("scheduler.skipped", job=name, reason="another process runs it")
                return None
            try:
                return await job()
            except Exception:
                log.exception("scheduler.job_failed", job=name)
                return None

    return run


def build_scheduler(jobs: list[tuple[str, Job, float]], *, first_run_in: float = 1.0) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone=UTC)
    start = datetime.now(UTC) + timedelta(seconds=first_run_in)
    for name, job, seconds in jobs:
        scheduler.add_job(
            job,
            "interval",
            seconds=seconds,
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(seconds)),
            next_run_time=start,
        )
    return scheduler
