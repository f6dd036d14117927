"""``merge-bot freeze | unfreeze | pause | unpause``: holds written to the database the settings name, each
recorded in the trains' audit log with who did it, a freeze or unfreeze told through the outbox; bad input
is one line on stderr and changes nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.models import HoldRow, Notification, TrainEvent

NOTIFY = "json://127.0.0.1:9/never-sent"


async def run(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MERGE_BOT_")}
    env.update(MERGE_BOT_DATABASE_URL=database_url, MERGE_BOT_REPOS="acme/app,acme/lib", MERGE_BOT_NOTIFY_URLS=NOTIFY)
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def rows(engine: AsyncEngine, model: Any) -> list[Any]:
    async with engine.connect() as connection:
        return list((await connection.execute(select(model.__table__).order_by(model.id))).all())


async def test_freeze_and_unfreeze_a_branch(engine: AsyncEngine, database_url: str) -> None:
    before = datetime.now(UTC)
    args = ("freeze", "acme/app:main", "--reason", "release 4.2", "--until", "2h", "--by", "ann")
    frozen = await run(database_url, *args)
    assert frozen.returncode == 0, frozen.stderr
    assert frozen.stdout.startswith("acme/app:main: frozen until ") and frozen.stdout.strip().endswith(": release 4.2")
    (hold,) = await rows(engine, HoldRow)
    placed = (hold.branch, hold.kind, hold.reason, hold.actor, hold.source)
    assert placed == ("main", "freeze", "release 4.2", "ann", "cli")
    two_hours = timedelta(hours=2)
    assert hold.until is not None and before + two_hours <= hold.until <= datetime.now(UTC) + two_hours
    assert hold.lifted_at is None

    thawed = await run(database_url, "unfreeze", "acme/app:main", "--by", "bea")
    assert thawed.returncode == 0, thawed.stderr
    assert thawed.stdout.strip() == "acme/app:main: unfrozen (it was for: release 4.2)"
    (hold,) = await rows(engine, HoldRow)
    assert hold.lifted_at is not None and hold.lifted_by == "bea"
    events = [(e.kind, e.branch, e.actor, e.source, e.reason) for e in await rows(engine, TrainEvent)]
    assert events == [
        ("frozen", "main", "ann", "cli", "release 4.2"),
        ("unfrozen", "main", "bea", "cli", "release 4.2"),
    ]
    told = [(n.kind, n.title, n.repository) for n in await rows(engine, Notification)]
    assert told == [
        ("frozen", "acme/app: the queue for main is frozen", "acme/app"),
        ("unfrozen", "acme/app: the queue for main is running again", "acme/app"),
    ]
    assert "release 4.2 (until " in (await rows(engine, Notification))[0].body


async def test_pause_with_cancel_and_a_repository_freeze(engine: AsyncEngine, database_url: str) -> None:
    paused = await run(database_url, "pause", "acme/lib", "--reason", "CI is down", "--cancel-running")
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.strip() == "acme/lib: paused (running candidates cancelled): CI is down"
    (hold,) = await rows(engine, HoldRow)
    assert (hold.branch, hold.kind, hold.cancel_running, hold.until) == (None, "pause", True, None)
    assert hold.actor  # the login name of whoever ran it
    assert await rows(engine, Notification) == []  # a pause is not a freeze: nothing is told outside
    again = await run(database_url, "pause", "acme/lib", "--reason", "CI is still down", "--by", "ann")
    assert again.returncode == 0 and "replacing the earlier one" in again.stdout
    first, second = await rows(engine, HoldRow)
    assert first.lifted_by == "ann" and second.lifted_at is None and second.cancel_running is False
    unpaused = await run(database_url, "unpause", "acme/lib", "--by", "ann")
    assert unpaused.returncode == 0, unpaused.stderr
    kinds = [(e.kind, e.branch, e.detail.get("cancel_running")) for e in await rows(engine, TrainEvent)]
    assert kinds == [("paused", None, True), ("paused", None, False), ("unpaused", None, None)]


async def test_bad_input_is_one_line_and_changes_nothing(engine: AsyncEngine, database_url: str) -> None:
    cases = [
        (("freeze", "someone/else", "--reason", "x"), "someone/else is not managed by this bot"),
        (("freeze", "acme", "--reason", "x"), "expected owner/repo or owner/repo:branch"),
        (("freeze", "acme/app:bad branch", "--reason", "x"), "is not a branch name"),
        (("freeze", "acme/app", "--reason", "   "), "a reason is required"),
        (("freeze", "acme/app", "--reason", "x", "--until", "soon"), "is neither a duration"),
        (("freeze", "acme/app", "--reason", "x", "--until", "2020-01-01T00:00Z"), "is not in the future"),
        (("freeze", "acme/app", "--reason", "x", "--until", "2999-01-01T00:00"), "has no time zone"),
        (("unfreeze", "acme/app"), "acme/app (the repository) is not frozen"),
        (("unpause", "acme/app:main"), "acme/app:main is not paused"),
    ]
    for args, complaint in cases:
        done = await run(database_url, *args)
        assert done.returncode == 1, (args, done.stdout)
        assert done.stderr.startswith("merge-bot: ")
        assert complaint in done.stderr and done.stderr.count("\n") == 1, (args, done.stderr)
    missing = await run(database_url, "freeze", "acme/app")
    assert missing.returncode == 2 and "--reason" in missing.stderr
    assert await rows(engine, HoldRow) == [] and await rows(engine, TrainEvent) == []
    assert await rows(engine, Notification) == []
