"""Notifications outside the forge (``bot/notifications/``): the outbox, the sender through apprise, the stuck
check. The target is a real JSON webhook receiver on 127.0.0.1 (an aiohttp server) reached through apprise's
``json://`` scheme; the database is real PostgreSQL; outcomes are told by the real ``Notices`` to the
simulator. Time is a clock the test moves."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot import logs
from bot.config import Settings, load_settings
from bot.db import queries
from bot.db.models import Entry, EntryEvent, Notification, PullRequest, Repository, Train
from bot.db.session import make_sessionmaker
from bot.forge.client import GiteaClient
from bot.gate.locks import TrainLock
from bot.gate.notices import Notices
from bot.notifications import Kind, Message, enqueue, targets
from bot.notifications.sender import Backoff, Sender
from bot.notifications.stuck import StuckCheck
from gitea_sim.testing import SimHandle, running_sim
from tests.clocks import StillClock
from tests.receiver import Receiver, running_receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as found:
        yield found


def _settings(tmp_path: Path, notify: str, **more: str) -> Settings:
    return load_settings(
        {
            "MERGE_BOT_WEBHOOK_SECRET": secrets.token_hex(16),
            "MERGE_BOT_DATA_DIR": str(tmp_path / "bot"),
            "MERGE_BOT_EXTERNAL_URL": "http://bot.example.org",
            "MERGE_BOT_NOTIFY_URLS": notify,
            **more,
        }
    )


async def _rows(sessions: async_sessionmaker[AsyncSession]) -> list[Notification]:
    async with sessions() as session:
        return list((await session.execute(select(Notification).order_by(Notification.id))).scalars())


# -- told by the gate ---------------------------------------------------------------------------------


@dataclass
class Scene:
    sim: SimHandle
    repo: str
    number: int
    head: str
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    clock: StillClock
    pull_id: int
    train_id: int
    notices: Notices

    async def entry(self, state: str, reason: str, detail: dict[str, Any]) -> int:
        async with self.sessions.begin() as session:
            entry = Entry(
                train_id=self.train_id,
                pull_request_id=self.pull_id,
                state=state,
                approved_sha=self.head,
                approved_by="maint",
                trigger="comment",
                reason=reason,
                reason_detail=detail,
                merged_sha=detail.get("sha") if state == "merged" else None,
                finished_at=self.clock.now(),
            )
            session.add(entry)
            await session.flush()
            return entry.id

    def sender(self, **options: Any) -> Sender:
        return Sender(self.sessions, self.clock, lambda _repository: targets(self.settings), **options)


@pytest.fixture
async def scene(tmp_path: Path, engine: AsyncEngine, database_url: str, receiver: Receiver) -> AsyncIterator[Scene]:
    async with running_sim(tmp_path) as sim, aiohttp.ClientSession() as http:
        owner = await sim.create_user("owner")
        bot = await sim.create_user("merge-bot")
        repo = await sim.create_repo(owner, "app")
        await sim.add_collaborator(repo, bot.login, "admin", as_user=owner)
        await sim.push_commit(repo, owner, "main", {"app.txt": "app\n"}, message="Initial")
        head = await sim.push_commit(repo, owner, "feature", {"f.txt": "f\n"}, base="main")
        number = int((await sim.create_pr(repo, owner, head="feature", base="main", title="Add f"))["number"])
        settings = _settings(
            tmp_path,
            receiver.url(),
            MERGE_BOT_GITEA_URL=sim.url,
            MERGE_BOT_GITEA_TOKEN=bot.token,
            MERGE_BOT_REPOS=repo,
        )
        forge = GiteaClient(http, sim.url, SecretStr(bot.token))
        sessions = make_sessionmaker(engine)
        owner_name, name = repo.split("/")
        info = await forge.get_pull(owner_name, name, number)
        clock = StillClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
        async with sessions.begin() as session:
            row = await queries.ensure_repository(session, owner_name, name)
            train = await queries.ensure_train(session, row.id, "main")
            pull = await queries.upsert_pull(session, row.id, info, clock.now())
        lock = await TrainLock.try_acquire(database_url, train.id)
        assert lock is not None

        def queue_url(repository: Repository, pr: int) -> str:
            return f"http://bot.example.org/queue/{repository.owner}/{repository.name}/pull/{pr}"

        notices = Notices(settings, sessions, forge, clock, lock, train.id, queue_url)
        try:
            yield Scene(sim, repo, number, head, settings, sessions, clock, pull.id, train.id, notices)
        finally:
            await lock.release()


async def test_a_merged_and_a_rejected_pr_are_sent_with_number_reason_and_links(
    scene: Scene, receiver: Receiver
) -> None:
    merged = await scene.entry("merged", "merged", {"sha": "a1b2c3d4e5f60718293a", "base": "main"})
    rejected = await scene.entry(
        "failed",
        "checks_failed",
        {"context": "ci/test", "state": "failure", "target_url": "http://ci.example.org/run/7", "sha": scene.head},
    )
    assert await scene.notices.tell_untold() == 2
    assert receiver.got == []  # telling only wrote the outbox; the sender sends
    rows = await _rows(scene.sessions)
    assert [(row.kind, row.entry_id, row.state) for row in rows] == [
        ("merged", merged, "pending"),
        ("rejected", rejected, "pending"),
    ]
    assert {row.target for row in rows} == {f"json://127.0.0.1:{receiver.port}/..."}

    done = await scene.sender().run()
    assert (done.sent, done.retrying, done.failed) == (2, 0, 0)
    said = {body["title"]: body for body in receiver.bodies}
    pull_link = f"{scene.sim.url}/{scene.repo}/pulls/{scene.number}"
    queue_link = f"http://bot.example.org/queue/{scene.repo}/pull/{scene.number}"
    landed = said[f"{scene.repo}: PR #{scene.number} merged"]
    assert landed["type"] == "success"
    assert f"PR #{scene.number} “Add f”" in landed["message"]
    assert "merged into main as a1b2c3d4e5" in landed["message"]
    assert pull_link in landed["message"] and queue_link in landed["message"]
    refused = said[f"{scene.repo}: PR #{scene.number} rejected"]
    assert refused["type"] == "failure"
    assert "ci/test reported failure (checks_failed)" in refused["message"]
    assert "http://ci.example.org/run/7" in refused["message"] and queue_link in refused["message"]
    assert [(row.state, row.attempts, row.sent_at) for row in await _rows(scene.sessions)] == [
        ("sent", 1, scene.clock.now()),
        ("sent", 1, scene.clock.now()),
    ]

    # Told again (a crash before told_at was kept): the outbox already has it, nothing is sent twice.
    async with scene.sessions.begin() as session:
        await session.execute(update(Entry).where(Entry.id == merged).values(told_at=None))
    assert await scene.notices.tell_untold() == 1
    assert len(await _rows(scene.sessions)) == 2
    assert (await scene.sender().run()).sent == 0
    assert len(receiver.got) == 2


async def test_a_cancelled_entry_is_not_sent(scene: Scene, receiver: Receiver) -> None:
    await scene.entry("cancelled", "cancelled_by_user", {"by": "maint"})
    assert await scene.notices.tell_untold() == 1
    assert await _rows(scene.sessions) == []


async def test_a_hanging_receiver_never_holds_up_the_gate(scene: Scene, receiver: Receiver) -> None:
    """The gate only writes the outbox; the sender gives up on a receiver that does not answer after its
    timeout and tries again later."""
    receiver.hang = True
    first = await scene.entry("merged", "merged", {"sha": "a1b2c3d4e5f60718293a"})
    assert await scene.notices.tell_untold() == 1
    sending = asyncio.create_task(scene.sender(timeout=4.0).run())
    await asyncio.wait_for(receiver.arrived.wait(), 30)
    second = await scene.entry("failed", "conflict", {"paths": ["f.txt"], "base": "main"})
    assert await scene.notices.tell_untold() == 1  # told, statuses and comments posted, while the chat hangs
    assert not sending.done()
    done = await asyncio.wait_for(sending, 30)
    assert (done.sent, done.retrying, done.failed) == (0, 1, 0)
    rows = {row.entry_id: row for row in await _rows(scene.sessions)}
    assert (rows[first].state, rows[first].attempts) == ("pending", 1)
    assert rows[first].next_try_at == scene.clock.now() + Backoff().first
    assert rows[first].last_error  # apprise's words: its socket timed out, or the call did not finish in time
    assert (rows[second].state, rows[second].attempts) == ("pending", 0)


# -- the sender ---------------------------------------------------------------------------------------


async def test_a_failing_receiver_is_retried_with_backoff_then_recorded_failed(
    engine: AsyncEngine, receiver: Receiver
) -> None:
    receiver.answer = 500
    sessions = make_sessionmaker(engine)
    clock = StillClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    url = receiver.url()
    async with sessions.begin() as session:
        message = Message(Kind.CONFIG_BROKEN, "merge-bot configuration is broken", "merge-bot.toml: bad")
        assert await enqueue(session, [url], message, now=clock.now()) == 1
    backoff = Backoff(first=timedelta(seconds=30), most=timedelta(minutes=2), tries=4)
    sender = Sender(sessions, clock, lambda _repository: [url], backoff=backoff)

    waits: list[timedelta] = []
    for _ in range(backoff.tries - 1):
        tried = len(receiver.got)
        done = await sender.run()
        assert (done.retrying, len(receiver.got)) == (1, tried + 1)
        (row,) = await _rows(sessions)
        assert row.state == "pending" and row.last_error and "500" in row.last_error
        wait = row.next_try_at - clock.now()
        waits.append(wait)
        clock.at += wait - timedelta(seconds=1)
        assert (await sender.run()).ids == []  # not due yet
        clock.at += timedelta(seconds=1)
    assert waits == [timedelta(seconds=30), timedelta(seconds=60), timedelta(minutes=2)]
    done = await sender.run()
    assert (done.failed, len(receiver.got)) == (1, backoff.tries)
    (row,) = await _rows(sessions)
    assert (row.state, row.attempts, row.sent_at) == ("failed", backoff.tries, None)
    clock.at += timedelta(days=1)
    assert (await sender.run()).ids == [] and len(receiver.got) == backoff.tries


async def test_a_target_no_longer_configured_is_not_sent_elsewhere(engine: AsyncEngine, receiver: Receiver) -> None:
    sessions = make_sessionmaker(engine)
    clock = StillClock()
    before = ["ntfys://ntfy.example.org/team-alerts-1f3a9c", receiver.url()]
    async with sessions.begin() as session:
        assert await enqueue(session, before, Message(Kind.FROZEN, "frozen", "frozen"), now=clock.now()) == 2
    done = await Sender(sessions, clock, lambda _repository: [receiver.url()]).run()
    assert (done.sent, done.failed) == (0, 2)  # index 0 is another URL now, index 1 is gone
    assert receiver.got == []
    assert all(row.last_error and "not configured now" in row.last_error for row in await _rows(sessions))


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_secrets_in_urls_never_reach_the_logs_or_the_outbox(
    tmp_path: Path, engine: AsyncEngine, receiver: Receiver, captured_logs: io.StringIO
) -> None:
    password, token, key = "pw-Hunter2xyz", "tok-Q1w2e3r4t5y6", "key-Z9y8x7w6v5"
    url = receiver.url(f"/hooks/{token}?+X-Api-Key={key}", userinfo=f"bot:{password}@")
    settings = _settings(tmp_path, url)
    logs.configure("debug", "json", settings.secrets(), stream=captured_logs)
    logging.getLogger("apprise").setLevel(logging.DEBUG)  # apprise's own debug lines name the URL and answer
    receiver.answer = 500
    sessions = make_sessionmaker(engine)
    clock = StillClock()
    async with sessions.begin() as session:
        await enqueue(session, targets(settings), Message(Kind.STUCK, "stuck", "the queue is stuck"), now=clock.now())
    assert (await Sender(sessions, clock, lambda _repository: targets(settings)).run()).retrying == 1

    (got,) = receiver.got  # the secrets did go where they belong
    assert got["path"].startswith(f"/hooks/{token}") and got["headers"]["X-Api-Key"] == key
    assert got["headers"]["Authorization"].startswith("Basic ")
    output = captured_logs.getvalue()
    assert "notification.retry" in output and '"logger": "apprise' in output
    (row,) = await _rows(sessions)
    assert row.last_error and row.target == f"json://127.0.0.1:{receiver.port}/..."
    for shown in (output, row.target, row.last_error, row.title, row.body):
        for secret in (password, token, key, url):
            assert secret not in shown


def test_check_config_never_shows_a_notify_url_secret() -> None:
    password, token, key = "pw-Hunter2xyz", "tok-Q1w2e3r4t5y6", "key-Z9y8x7w6v5"
    url = f"json://bot:{password}@127.0.0.1:8123/hooks/{token}?+X-Api-Key={key}"
    clean = {name: value for name, value in os.environ.items() if not name.startswith("MERGE_BOT_")}
    env = {
        **clean,
        "MERGE_BOT_WEBHOOK_SECRET": "s3cret-value",
        "MERGE_BOT_NOTIFY_URLS": f"{url}, tgram://123:{token}/9",
    }
    for extra in ([], ["--json"]):
        result = subprocess.run(
            [sys.executable, "-m", "bot", "check-config", *extra], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert "json://127.0.0.1:8123/..." in result.stdout
        for secret in (password, token, key):
            assert secret not in result.stdout + result.stderr
    assert json.loads(result.stdout)["notify_urls"] == ["json://127.0.0.1:8123/...", "tgram://..."]


# -- the stuck check ----------------------------------------------------------------------------------


@dataclass
class Line:
    sessions: async_sessionmaker[AsyncSession]
    train_id: int
    repository_id: int
    numbers: int = 0

    async def entry(self, state: str, at: datetime, *, train_id: int | None = None) -> int:
        self.numbers += 1
        async with self.sessions.begin() as session:
            pull = PullRequest(repository_id=self.repository_id, number=self.numbers)
            session.add(pull)
            await session.flush()
            entry = Entry(
                train_id=train_id or self.train_id,
                pull_request_id=pull.id,
                state=state,
                approved_sha="a" * 40,
                approved_by="maint",
                trigger="comment",
                queued_at=at,
            )
            session.add(entry)
            await session.flush()
            session.add(EntryEvent(entry_id=entry.id, kind="queued" if state != "waiting" else "waiting", at=at))
            return entry.id

    async def event(self, entry_id: int, kind: str, at: datetime) -> None:
        async with self.sessions.begin() as session:
            session.add(EntryEvent(entry_id=entry_id, kind=kind, at=at))


async def test_a_train_with_work_and_no_progress_is_told_once_per_episode(engine: AsyncEngine, tmp_path: Path) -> None:
    settings = _settings(tmp_path, "json://127.0.0.1:9/never-sent", MERGE_BOT_STUCK_MINUTES="30")
    sessions = make_sessionmaker(engine)
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    clock = StillClock(start)
    async with sessions.begin() as session:
        repo = await queries.ensure_repository(session, "acme", "app")
        train = await queries.ensure_train(session, repo.id, "main")
        paused = await queries.ensure_train(session, repo.id, "frozen")
        waits = await queries.ensure_train(session, repo.id, "waits")
        await session.execute(update(Train).where(Train.id == paused.id).values(paused=True))
    line = Line(sessions, train.id, repo.id)
    old = await line.entry("merged", start - timedelta(hours=3))
    await line.event(old, "merged", start - timedelta(hours=2))  # the train was idle since
    first = await line.entry("queued", start)
    await line.entry("queued", start - timedelta(hours=5), train_id=paused.id)  # frozen on purpose
    await line.entry("waiting", start - timedelta(hours=5), train_id=waits.id)  # waits for its dependencies
    check = StuckCheck(settings, sessions, clock, lambda _repository: targets(settings))

    clock.at = start + timedelta(minutes=29)
    assert await check.run() == 0
    clock.at = start + timedelta(minutes=30)
    assert await check.run() == 1
    (row,) = await _rows(sessions)
    assert (row.kind, row.train_id, row.repository) == ("stuck", train.id, "acme/app")
    assert "1 PR in line for main" in row.body and "30 minutes" in row.body
    assert "http://bot.example.org/queue/acme/app#main" in row.body

    await line.entry("queued", start + timedelta(minutes=40))  # more work arriving is not progress
    clock.at = start + timedelta(minutes=50)
    assert await check.run() == 0  # the same episode

    await line.event(first, "attempt_started", start + timedelta(minutes=60))
    clock.at = start + timedelta(minutes=89)
    assert await check.run() == 0
    clock.at = start + timedelta(minutes=90)
    assert await check.run() == 1  # a new episode
    rows = await _rows(sessions)
    assert [row.kind for row in rows] == ["stuck", "stuck"]
    assert "2 PRs in line" in rows[1].body


async def test_stuck_minutes_zero_turns_the_check_off(engine: AsyncEngine, tmp_path: Path) -> None:
    settings = _settings(tmp_path, "json://127.0.0.1:9/never-sent", MERGE_BOT_STUCK_MINUTES="0")
    sessions = make_sessionmaker(engine)
    clock = StillClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    async with sessions.begin() as session:
        repo = await queries.ensure_repository(session, "acme", "app")
        train = await queries.ensure_train(session, repo.id, "main")
    await Line(sessions, train.id, repo.id).entry("queued", clock.now() - timedelta(days=2))
    assert await StuckCheck(settings, sessions, clock, lambda _repository: targets(settings)).run() == 0
    assert await _rows(sessions) == []
