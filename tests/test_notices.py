"""Telling an outcome again (``bot/gate/notices.py``) after a crash or a refusing forge: never a second
comment, never over a newer entry of the same PR, never deleting a branch that moved on since the merge.
Real PostgreSQL and the simulator; the entries are written as a gate would have left them."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.clock import SystemClock
from bot.config import load_settings
from bot.db import queries
from bot.db.models import Entry
from bot.db.session import make_sessionmaker
from bot.forge.client import GiteaClient
from bot.gate.locks import TrainLock
from bot.gate.notices import Notices
from bot.queue import messages
from bot.queue.model import Reason
from gitea_sim.testing import SimHandle, SimUser, running_sim


@dataclass
class Scene:
    sim: SimHandle
    owner: SimUser
    repo: str
    number: int
    head: str
    sessions: async_sessionmaker[AsyncSession]
    pull_id: int
    train_id: int
    notices: Notices

    async def entry(self, state: str, reason: str, detail: dict[str, Any], *, approved: str = "") -> int:
        async with self.sessions.begin() as session:
            entry = Entry(
                train_id=self.train_id,
                pull_request_id=self.pull_id,
                state=state,
                approved_sha=approved or self.head,
                approved_by="maint",
                trigger="label",
                reason=reason or None,
                reason_detail=detail,
                merged_sha=detail.get("sha") if state == "merged" else None,
                finished_at=datetime.now(UTC) if reason else None,
            )
            session.add(entry)
            await session.flush()
            return entry.id

    async def told_at(self, entry_id: int) -> datetime | None:
        async with self.sessions() as session:
            return (await session.execute(select(Entry.told_at).where(Entry.id == entry_id))).scalar_one()

    async def outcome_comments(self) -> list[str]:
        comments = await self.sim.api("GET", f"/repos/{self.repo}/issues/{self.number}/comments")
        return [str(c["body"]) for c in comments if str(c["body"]).startswith("Not merged")]

    async def bot_statuses(self, sha: str) -> list[str]:
        statuses = await self.sim.api("GET", f"/repos/{self.repo}/commits/{sha}/statuses")
        return [str(s["status"]) for s in statuses if s["context"] == "merge-bot"]

    async def labels(self) -> list[str]:
        return [
            str(item["name"]) for item in await self.sim.api("GET", f"/repos/{self.repo}/issues/{self.number}/labels")
        ]


@pytest.fixture
async def scene(tmp_path: Path, engine: AsyncEngine, database_url: str) -> AsyncIterator[Scene]:
    async with running_sim(tmp_path) as sim, aiohttp.ClientSession() as http:
        owner = await sim.create_user("owner")
        bot = await sim.create_user("merge-bot")
        repo = await sim.create_repo(owner, "app")
        await sim.add_collaborator(repo, bot.login, "admin", as_user=owner)
        await sim.push_commit(repo, owner, "main", {"app.txt": "app\n"}, message="Initial")
        head = await sim.push_commit(repo, owner, "feature", {"f.txt": "f\n"}, base="main")
        number = int((await sim.create_pr(repo, owner, head="feature", base="main"))["number"])
        await sim.create_label(repo, "merge-queue")
        await sim.api(
            "POST", f"/repos/{repo}/issues/{number}/labels", token=owner.token, json={"labels": ["merge-queue"]}
        )
        settings = load_settings(
            {
                "MERGE_BOT_GITEA_URL": sim.url,
                "MERGE_BOT_GITEA_TOKEN": bot.token,
                "MERGE_BOT_WEBHOOK_SECRET": secrets.token_hex(16),
                "MERGE_BOT_REPOS": repo,
                "MERGE_BOT_DATA_DIR": str(tmp_path / "bot"),
                "MERGE_BOT_DELETE_BRANCH_AFTER_MERGE": "true",
            }
        )
        forge = GiteaClient(http, sim.url, SecretStr(bot.token))
        sessions = make_sessionmaker(engine)
        owner_name, name = repo.split("/")
        info = await forge.get_pull(owner_name, name, number)
        async with sessions.begin() as session:
            row = await queries.ensure_repository(session, owner_name, name)
            train = await queries.ensure_train(session, row.id, "main")
            pull = await queries.upsert_pull(session, row.id, info, datetime.now(UTC))
        lock = await TrainLock.try_acquire(database_url, train.id)
        assert lock is not None
        notices = Notices(settings, sessions, forge, SystemClock(), lock, train.id, lambda r, n: f"http://bot/{n}")
        try:
            yield Scene(sim, owner, repo, number, head, sessions, pull.id, train.id, notices)
        finally:
            await lock.release()


FAILED = {"context": "ci/test", "state": "failure", "sha": "c" * 40, "base": "main"}


async def test_an_outcome_told_again_is_commented_once(scene: Scene) -> None:
    entry_id = await scene.entry("failed", Reason.CHECKS_FAILED.value, {**FAILED, "status_sha": scene.head})
    assert await scene.notices.tell_untold() == 1
    assert len(await scene.outcome_comments()) == 1
    assert await scene.bot_statuses(scene.head) == ["failure"]
    assert "merge-queue" not in await scene.labels()
    # A crash after the comment, before told_at: the next holder tells it again, without a second comment.
    async with scene.sessions.begin() as session:
        await session.execute(update(Entry).where(Entry.id == entry_id).values(told_at=None))
    await scene.notices.tell_untold()
    assert len(await scene.outcome_comments()) == 1
    assert await scene.told_at(entry_id) is not None


async def test_an_outcome_commented_by_a_version_without_markers_is_not_commented_again(scene: Scene) -> None:
    detail = {**FAILED, "status_sha": scene.head}
    body = messages.outcome_comment(Reason.CHECKS_FAILED, detail, queue_url=f"http://bot/{scene.number}")
    await scene.sim.comment(scene.repo, scene.number, scene.owner, body)  # what the bot before 0002 posted
    await scene.entry("failed", Reason.CHECKS_FAILED.value, detail)
    await scene.notices.tell_untold()
    assert await scene.outcome_comments() == [body]


async def test_a_late_outcome_leaves_a_newer_entry_its_status_and_label(scene: Scene) -> None:
    old = await scene.entry("failed", Reason.CHECKS_FAILED.value, {**FAILED, "status_sha": scene.head})
    await scene.entry("queued", "", {})  # queued again (by the label) before the old outcome was told
    await scene.notices.tell_untold()
    assert len(await scene.outcome_comments()) == 1
    assert await scene.bot_statuses(scene.head) == []  # the newer entry's to set
    assert "merge-queue" in await scene.labels()
    assert await scene.told_at(old) is not None


async def test_the_merged_branch_is_deleted_only_while_it_holds_the_merged_head(scene: Scene) -> None:
    merged = {"sha": "d" * 40, "base": "main", "strategy": "staging"}
    moved = await scene.sim.push_commit(scene.repo, scene.owner, "feature", {"g.txt": "g\n"})
    await scene.entry("merged", Reason.MERGED.value, merged, approved=scene.head)  # merged at the old head
    await scene.notices.tell_untold()
    branches = {b["name"]: b["commit"]["id"] for b in await scene.sim.api("GET", f"/repos/{scene.repo}/branches")}
    assert branches.get("feature") == moved  # pushed again since the merge: not the bot's to delete
    await scene.entry("merged", Reason.MERGED.value, merged, approved=moved)
    await scene.notices.tell_untold()
    branches = {b["name"]: b["commit"]["id"] for b in await scene.sim.api("GET", f"/repos/{scene.repo}/branches")}
    assert "feature" not in branches
