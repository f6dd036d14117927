"""Fixtures for the queue page, the JSON API and the metrics: the app on a real database, seeded with one
train in every situation the page shows (a running attempt with checks, a line with priorities, a PR
waiting for another, merges, failures, a cancellation), and a clock the test holds still."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.app import create_app
from bot.config import Settings, load_settings
from bot.db.models import (
    Attempt,
    AttemptEntry,
    CommitStatus,
    Dependency,
    Entry,
    EntryEvent,
    PullRequest,
    Repository,
    Train,
    WebhookDelivery,
)
from tests.clocks import StillClock

Client = TestClient[web.Request, web.Application]
NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def web_settings(tmp_path: Path, **extra: str) -> Settings:
    """Settings without a forge token: the app serves pages and stores webhooks, no queue runs."""
    return load_settings(
        {
            "MERGE_BOT_WEBHOOK_SECRET": "whsec-" + secrets.token_hex(8),
            "MERGE_BOT_REPOS": "acme/app,acme/lib",
            "MERGE_BOT_GITEA_URL": "https://git.example.org",
            "MERGE_BOT_DATA_DIR": str(tmp_path / "data"),
            **extra,
        }
    )


@dataclass
class Seeded:
    """Ids of what :func:`seed` made, by PR number."""

    train_id: int
    entries: dict[int, int]
    attempts: dict[int, int]
    candidate: str


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


async def seed(engine: AsyncEngine) -> Seeded:
    """acme/app → main: #1 merged, #2 failed (ci/test red), #7 cancelled, #3 under test (ci/test pending, lint
    green), #4 queued, #5 queued with priority 5 (so ahead of #4), #6 waiting for #4 and acme/lib#9."""
    candidate = "c" * 40
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        repo = Repository(owner="acme", name="app", forge_id=1)
        session.add(repo)
        await session.flush()
        train = Train(repository_id=repo.id, branch="main")
        session.add(train)
        await session.flush()
        titles = {
            1: "Add subtract",
            2: "Break the build",
            3: "Add multiply <script>alert(1)</script>",
            4: "Document the API",
            5: "Fix the login crash",
            6: "Use the new API",
            7: "Experiment",
        }
        pulls = {}
        for number, title in titles.items():
            pull = PullRequest(
                repository_id=repo.id,
                number=number,
                title=title,
                author="alice" if number % 2 else "bob",
                head_sha=f"{number}" * 40,
                head_ref=f"feature-{number}",
                base_ref="main",
                state="closed" if number == 1 else "open",
                merged=number == 1,
            )
            session.add(pull)
            pulls[number] = pull
        await session.flush()

        def entry(number: int, state: str, queued: float, **values: Any) -> Entry:
            made = Entry(
                train_id=train.id,
                pull_request_id=pulls[number].id,
                state=state,
                approved_sha=f"{number}" * 40,
                approved_by="maint",
                queued_at=ago(queued),
                **{"trigger": "comment", **values},
            )
            session.add(made)
            return made

        merged = entry(1, "merged", 50, reason="merged", merged_sha="a" * 40, finished_at=ago(40))
        failed_detail = {
            "context": "ci/test",
            "state": "failure",
            "target_url": "https://ci.example.org/runs/2",
            "description": "tests failed",
            "sha": "b" * 40,
            "base": "main",
        }
        failed = entry(2, "failed", 39, reason="checks_failed", reason_detail=failed_detail, finished_at=ago(30))
        cancelled = entry(
            7, "cancelled", 29, reason="cancelled_by_user", reason_detail={"by": "maint"}, finished_at=ago(25)
        )
        testing = entry(3, "testing", 20)
        queued = entry(4, "queued", 15)
        urgent = entry(5, "queued", 10, priority=5)
        waiting = entry(6, "waiting", 5, trigger="label")
        await session.flush()
        session.add_all(
            [
                Dependency(entry_id=waiting.id, owner="acme", repo="app", number=4, source="command"),
                Dependency(entry_id=waiting.id, owner="acme", repo="lib", number=9, source="body"),
            ]
        )
        done = Attempt(
            train_id=train.id,
            state="done",
            base_sha="0" * 40,
            candidate_sha="a" * 40,
            ref="refs/heads/merge-bot/main/1",
            created_at=ago(45),
            finished_at=ago(40),
            deadline_at=ago(45) + timedelta(hours=1),
        )
        red = Attempt(
            train_id=train.id,
            state="failed",
            base_sha="a" * 40,
            candidate_sha="b" * 40,
            ref="refs/heads/merge-bot/main/2",
            reason="checks_failed",
            reason_detail=failed_detail,
            created_at=ago(35),
            finished_at=ago(30),
        )
        running = Attempt(
            train_id=train.id,
            state="testing",
            base_sha="a" * 40,
            candidate_sha=candidate,
            ref="refs/heads/merge-bot/main/3",
            created_at=ago(3),
            deadline_at=NOW + timedelta(minutes=57),
        )
        session.add_all([done, red, running])
        await session.flush()
        session.add_all(
            [
                AttemptEntry(attempt_id=done.id, entry_id=merged.id, position=0, head_sha="1" * 40),
                AttemptEntry(attempt_id=red.id, entry_id=failed.id, position=0, head_sha="2" * 40),
                AttemptEntry(attempt_id=running.id, entry_id=testing.id, position=0, head_sha="3" * 40),
            ]
        )
        events = [
            (merged, None, "queued", None, "maint", {"sha": "1" * 40, "priority": 0}, 50),
            (merged, done, "attempt_started", None, None, {"base": "0" * 40}, 45),
            (merged, done, "candidate_built", None, None, {"sha": "a" * 40, "ref": "refs/heads/merge-bot/main/1"}, 44),
            (merged, done, "merged", "merged", None, {"sha": "a" * 40}, 40),
            (failed, None, "queued", None, "maint", {"sha": "2" * 40}, 39),
            (failed, red, "attempt_started", None, None, {"base": "a" * 40}, 35),
            (failed, red, "candidate_built", None, None, {"sha": "b" * 40, "ref": "refs/heads/merge-bot/main/2"}, 34),
            (failed, red, "failed", "checks_failed", None, failed_detail, 30),
            (cancelled, None, "queued", None, "maint", {"sha": "7" * 40}, 29),
            (cancelled, None, "cancelled", "cancelled_by_user", None, {"by": "maint"}, 25),
            (testing, None, "queued", None, "maint", {"sha": "3" * 40}, 20),
            (testing, running, "attempt_started", None, None, {"base": "a" * 40}, 3),
            (
                testing,
                running,
                "candidate_built",
                None,
                None,
                {"sha": candidate, "ref": "refs/heads/merge-bot/main/3"},
                2,
            ),
            (queued, None, "queued", None, "maint", {"sha": "4" * 40}, 15),
            (urgent, None, "queued", None, "maint", {"sha": "5" * 40, "priority": 5}, 10),
            (waiting, None, "waiting", None, "maint", {"sha": "6" * 40, "after": ["#4", "acme/lib#9"]}, 5),
        ]
        for owner, attempt, kind, reason, actor, detail, minutes in events:
            session.add(
                EntryEvent(
                    entry_id=owner.id,
                    attempt_id=attempt.id if attempt else None,
                    kind=kind,
                    reason=reason,
                    actor=actor,
                    detail=detail,
                    at=ago(minutes),
                )
            )
        for context, state, url in (
            ("ci/test", "pending", "https://ci.example.org/runs/3"),
            ("lint", "success", "javascript:alert(1)"),
            ("merge-bot", "pending", "https://bot.example.org/"),
        ):
            session.add(
                CommitStatus(
                    repository_id=repo.id,
                    sha=candidate,
                    context=context,
                    state=state,
                    description=f"{context} says {state}",
                    target_url=url,
                    updated_at=ago(1),
                )
            )
        for index, (event, state) in enumerate(
            (("pull_request", "done"), ("status", "done"), ("issue_comment", "pending"))
        ):
            session.add(
                WebhookDelivery(
                    delivery_uuid=f"uuid-{index}",
                    event=event,
                    event_type=event,
                    repository="acme/app",
                    payload={},
                    state=state,
                    received_at=ago(2),
                )
            )
    return Seeded(
        train_id=train.id,
        entries={1: merged.id, 2: failed.id, 3: testing.id, 4: queued.id, 5: urgent.id, 6: waiting.id, 7: cancelled.id},
        attempts={1: done.id, 2: red.id, 3: running.id},
        candidate=candidate,
    )


@pytest.fixture
async def seeded(engine: AsyncEngine) -> Seeded:
    return await seed(engine)


@pytest.fixture
async def client(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]], engine: AsyncEngine, tmp_path: Path
) -> Client:
    return await aiohttp_client(create_app(web_settings(tmp_path), engine=engine, clock=StillClock(NOW)))
