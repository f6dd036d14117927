"""A train's recent record as the adaptive choice reads it (bot/db/history.py), on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.db.history import flaky_context, train_history
from bot.db.models import Attempt, CommitStatus, Entry, PullRequest, Repository, Train
from bot.db.session import make_sessionmaker
from bot.queue.adaptive import History, Outcome, Run, estimate

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MERGED, CULPRIT = Outcome.MERGED, Outcome.CULPRIT


@pytest.mark.parametrize(
    ("state", "reason", "detail", "expected"),
    [
        ("failed", "bisected", {"context": "ci", "outcome": "flaky"}, "ci"),
        ("failed", "bisected", {"context": "ci", "outcome": "culprit"}, None),
        ("failed", "bisected", {"context": "ci"}, None),  # not settled yet
        ("failed", "bisected", {"context": "ci", "outcome": "flaky", "inherits": 3}, None),  # no run of its own
        ("failed", "bisected", {"context": "", "outcome": "flaky"}, None),  # timed out: no context to blame
        ("failed", "retried", {"context": "lint", "outcome": "flaky"}, "lint"),
        ("done", None, {"optimistic": True, "context": "ci", "outcome": "flaky"}, "ci"),
        ("done", None, {"optimistic": False, "context": "ci", "outcome": "flaky"}, None),
        ("done", None, {"context": "ci", "outcome": "flaky"}, None),
        ("failed", "checks_failed", {"context": "ci", "outcome": "flaky"}, None),
        ("abandoned", "base_moved", None, None),
    ],
)
def test_which_attempts_were_flaky(
    state: str, reason: str | None, detail: dict[str, Any] | None, expected: str | None
) -> None:
    assert flaky_context(state, reason, detail) == expected


async def _ids(connection: AsyncConnection, statement: Any) -> int:
    return int((await connection.execute(statement)).scalar_one())


async def _train(connection: AsyncConnection, owner: str, branch: str = "main") -> tuple[int, int, int]:
    repo = await _ids(connection, insert(Repository).values(owner=owner, name="r").returning(Repository.id))
    train = await _ids(connection, insert(Train).values(repository_id=repo, branch=branch).returning(Train.id))
    pull = await _ids(connection, insert(PullRequest).values(repository_id=repo, number=1).returning(PullRequest.id))
    return repo, train, pull


async def _entry(
    connection: AsyncConnection, train: int, pull: int, state: str, reason: str | None, minutes: int | None
) -> None:
    finished = None if minutes is None else T0 + timedelta(minutes=minutes)
    await connection.execute(
        insert(Entry).values(
            train_id=train,
            pull_request_id=pull,
            state=state,
            reason=reason,
            finished_at=finished,
            approved_sha="a" * 40,
            approved_by="u",
            trigger="comment",
        )
    )


async def _attempt(
    connection: AsyncConnection,
    train: int,
    state: str,
    sha: str | None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await connection.execute(
        insert(Attempt).values(
            train_id=train, state=state, base_sha="b" * 40, candidate_sha=sha, reason=reason, reason_detail=detail
        )
    )


async def _status(connection: AsyncConnection, repo: int, sha: str, context: str, state: str) -> None:
    await connection.execute(insert(CommitStatus).values(repository_id=repo, sha=sha, context=context, state=state))


async def test_an_empty_train_has_an_empty_history(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        _, train, _ = await _train(connection, "o")
    async with make_sessionmaker(engine)() as session:
        assert await train_history(session, train) == History()


async def test_outcomes_are_the_newest_counted_final_entries(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        _, train, pull = await _train(connection, "o")
        _, other, other_pull = await _train(connection, "p")
        await _entry(connection, train, pull, "merged", "merged", 10)  # finished last, though queued first
        await _entry(connection, train, pull, "failed", "checks_failed", 2)
        await _entry(connection, train, pull, "failed", "conflict", 3)  # says nothing about CI
        await _entry(connection, train, pull, "cancelled", "cancelled_by_user", 4)
        await _entry(connection, train, pull, "failed", "ci_timeout", 5)
        await _entry(connection, train, pull, "merged", "merged", 6)
        await _entry(connection, train, pull, "queued", None, None)
        await _entry(connection, other, other_pull, "failed", "checks_failed", 20)  # another train
    async with make_sessionmaker(engine)() as session:
        history = await train_history(session, train)
        assert history.outcomes == (MERGED, MERGED, CULPRIT, CULPRIT)
        assert history.runs == ()
        assert (await train_history(session, train, limit=3)).outcomes == (MERGED, MERGED, CULPRIT)
    assert estimate(history).p == pytest.approx(3 / 14)  # (2 + 1) / (4 + 10)


async def test_runs_per_candidate_and_context_with_their_flakes(engine: AsyncEngine) -> None:
    s = {n: f"{n:x}".rjust(40, "c") for n in range(1, 11)}
    async with engine.begin() as connection:
        repo, train, _ = await _train(connection, "o")
        other_repo, other, _ = await _train(connection, "p")
        # 1: green on both contexts; the bot's own status does not count.
        await _attempt(connection, train, "done", s[1])
        for context in ("ci", "lint", "merge-bot"):
            await _status(connection, repo, s[1], context, "success")
        # 2: a batch red on ci whose parts all passed; 3: one whose culprit was found.
        await _attempt(connection, train, "failed", s[2], "bisected", {"context": "ci", "outcome": "flaky"})
        await _status(connection, repo, s[2], "ci", "failure")
        await _status(connection, repo, s[2], "lint", "success")
        await _attempt(connection, train, "failed", s[3], "bisected", {"context": "ci", "outcome": "culprit"})
        await _status(connection, repo, s[3], "ci", "error")
        # 4: a part whose tree was the batch's: never pushed, never run.
        detail = {"context": "ci", "outcome": "flaky", "inherits": 2}
        await _attempt(connection, train, "failed", s[4], "bisected", detail)
        # 5: red on lint, green when tested again on the same commit: one candidate, flaky on lint.
        await _attempt(connection, train, "failed", s[5], "retried", {"context": "lint", "outcome": "flaky"})
        await _attempt(connection, train, "done", s[5])
        await _status(connection, repo, s[5], "ci", "success")
        await _status(connection, repo, s[5], "lint", "success")
        # 6: red on ci, landed through a green candidate behind it.
        detail = {"optimistic": True, "context": "ci", "outcome": "flaky"}
        await _attempt(connection, train, "done", s[6], None, detail)
        await _status(connection, repo, s[6], "ci", "failure")
        # 7: abandoned while ci was still pending: no result.
        await _attempt(connection, train, "abandoned", s[7], "base_moved")
        await _status(connection, repo, s[7], "ci", "pending")
        # Still under test, or not built yet: not history.
        await _attempt(connection, train, "testing", s[8])
        await _status(connection, repo, s[8], "ci", "success")
        await _attempt(connection, train, "building", None)
        # Another train's flake, and another repository's status on one of this train's commits.
        await _attempt(connection, other, "failed", s[9], "bisected", {"context": "ci", "outcome": "flaky"})
        await _status(connection, other_repo, s[9], "ci", "failure")
        await _status(connection, other_repo, s[1], "deploy", "failure")
    async with make_sessionmaker(engine)() as session:
        history = await train_history(session, train)
        assert history.outcomes == ()
        assert history.runs == (
            Run("ci", flaky=True),  # 6
            Run("ci"),  # 5
            Run("lint", flaky=True),
            Run("ci"),  # 3
            Run("ci", flaky=True),  # 2
            Run("lint"),
            Run("ci"),  # 1
            Run("lint"),
        )
        # The newest three candidates (7, 6, 5), however many attempts tested them: 5's flake is kept.
        newest = await train_history(session, train, limit=3)
        assert newest.runs == (Run("ci", flaky=True), Run("ci"), Run("lint", flaky=True))
        assert (await train_history(session, train, own_context="ci")).runs == (
            Run("lint", flaky=True),
            Run("lint"),
            Run("lint"),
            Run("merge-bot"),
        )
    found = estimate(history)
    assert found.runs == {"ci": 5, "lint": 3}
    assert found.flakes["ci"] == pytest.approx(2.1 / 15)  # (2 + 0.1) / (5 + 10)
    assert found.flakes["lint"] == pytest.approx(1.1 / 13)
