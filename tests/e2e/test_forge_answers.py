"""How the bot takes the forge's answers at the moment it lands a PR (docs/faults.md #15, #17-#19, #27, #28).

Everything here runs the real bot against the Gitea simulator: the forge's answers come from its fault
injection (``/_sim/faults``), its "checking" state, its branch protection and, for refused connections, a TCP
relay in front of it that goes away; the tests count what reached the forge in the simulator's log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.models import Attempt, Repository
from gitea_sim.testing import SimHandle, free_port
from tests.e2e.conftest import World, eventually, make_world

pytestmark = pytest.mark.slow

MERGE_PATH = "/api/v1/repos/{repo}/pulls/*/merge"


async def merge_calls(world: World) -> list[dict[str, Any]]:
    """Every merge call (any ``Do``) that reached the forge, in order."""
    return [
        e
        for e in await world.sim.log("api")
        if e.get("method") == "POST"
        and e["path"].startswith(f"/api/v1/repos/{world.repo}/pulls/")
        and e["path"].endswith("/merge")
    ]


async def pushes_to(world: World, branch: str, pusher: str) -> list[dict[str, Any]]:
    """Every push by ``pusher`` that tried to move ``branch`` (accepted or refused by the pre-receive hook)."""
    return [
        e
        for e in await world.sim.log("pre_receive")
        if e["pusher"] == pusher and any(u["ref"] == f"refs/heads/{branch}" for u in e["updates"])
    ]


async def attempt_in(world: World, state: str) -> Any:
    async def check() -> Any:
        async with world.engine.connect() as connection:
            return (await connection.execute(select(Attempt.__table__).where(Attempt.state == state).limit(1))).first()

    return await eventually(check, within=60, what=f"an attempt in state {state}")


async def branched_pr(world: World) -> int:
    """A PR the base moved past after it branched, so its candidate is a new commit (a push the forge sees)."""
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await world.sim.push_commit(world.repo, world.owner, "main", {"other.txt": "o\n"}, message="Other")
    await world.sim.wait_idle()
    return number


# -- #17 "try again later" ------------------------------------------------------------------------------


async def test_try_again_later_while_gitea_checks_mergeability_is_retried_and_lands(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    """docs/faults.md #17, pr-branch: the bot's rebase of the PR branch leaves Gitea "checking" the PR for a
    while (the ``merge_check`` fault), so ``Do=fast-forward-only`` is answered 405 "Please try again later"
    until the check is done. The bot backs off, merges, and the entry is merged, not failed."""
    async for world in make_world(sim, engine, tmp_path, strategy="pr-branch"):
        number = await branched_pr(world)
        await sim.fault(kind="merge_check", delay_s=4)  # the check after the bot's own push of the PR branch
        await world.queue(number)
        entry = await world.final_entry(number)
        assert (entry.state, entry.reason) == ("merged", "merged"), entry
        assert await world.main_sha() == entry.merged_sha
        assert (await sim.get_pr(world.repo, number))["merged"] is True
        answers = [call["status"] for call in await merge_calls(world)]
        assert answers[0] == 405 and answers[-1] == 200, answers  # met the checking state, then merged
        assert answers.count(200) == 1
        assert len(answers) <= 8, answers  # backed off: not one call per poll for four seconds


async def test_try_again_later_on_marking_the_pr_merged_is_retried(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    """docs/faults.md #17, staging: the base moves by the bot's fast-forward push, then the PR is marked with
    ``Do=manually-merged``; that call is answered 405 "Please try again later" twice. The bot tries again
    later: the PR ends marked merged on the forge (not left open with its commits on the base)."""
    async for world in make_world(sim, engine, tmp_path):
        number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
        await sim.fault(
            kind="http",
            method="POST",
            path=MERGE_PATH.format(repo=world.repo),
            status=405,
            message="Please try again later",
            count=2,
        )
        await world.queue(number)
        entry = await world.final_entry(number)
        assert entry.state == "merged", entry
        assert await world.main_sha() == entry.merged_sha
        pr = await sim.get_pr(world.repo, number)
        assert pr["merged"] is True
        assert pr["merge_commit_sha"] == entry.merged_sha
        answers = [call["status"] for call in await merge_calls(world)]
        assert answers == [405, 405, 200], answers
        assert len(await pushes_to(world, "main", world.bot.login)) == 1  # the base moved once


# -- #18 the forge will not let the bot merge ---------------------------------------------------------------


async def test_protected_base_refusing_the_bots_push_fails_once_with_what_to_fix(world: World) -> None:
    """docs/faults.md #18, staging: the base's protection lets only the owner push, so the bot's fast-forward
    is refused by the pre-receive hook. The entry fails naming the push whitelist; the bot tries the push a
    bounded number of times (once), and the queue goes on to the next PR, which fails the same way."""
    await world.sim.protect(
        world.repo, "main", enable_push=True, enable_push_whitelist=True, push_whitelist_usernames=["owner"]
    )
    before = await world.main_sha()
    first = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    second = await world.open_pr("feature-c", {"c.txt": "c\n"})
    await world.queue(first)
    await world.queue(second)
    entry = await world.final_entry(first)
    assert (entry.state, entry.reason) == ("failed", "merge_refused"), entry
    assert "Not allowed to push to protected branch main" in entry.reason_detail["message"]
    await world.says(first, "push whitelist", "main")
    assert (await world.final_entry(second)).reason == "merge_refused"  # the queue moved on
    assert await world.main_sha() == before
    assert [p["ok"] for p in await pushes_to(world, "main", world.bot.login)] == [False, False]  # one per PR
    assert not (await world.sim.get_pr(world.repo, first))["merged"]


async def test_merge_not_allowed_for_the_bot_fails_once_with_what_to_fix(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    """docs/faults.md #18, pr-branch: the base's protection has a merge whitelist without the bot, so Gitea
    answers the merge call 405 "User not allowed to merge PR". The PR is still open (re-read), so the entry
    fails with a message about the bot's right to merge; exactly one merge call reached the forge."""
    async for world in make_world(sim, engine, tmp_path, strategy="pr-branch"):
        await sim.protect(world.repo, "main", enable_merge_whitelist=True, merge_whitelist_usernames=["owner"])
        before = await world.main_sha()
        number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
        await world.queue(number)
        entry = await world.final_entry(number)
        assert (entry.state, entry.reason) == ("failed", "merge_refused"), entry
        assert entry.reason_detail["message"] == "User not allowed to merge PR"
        await world.says(number, "User not allowed to merge PR", "merge whitelist")
        assert await world.main_sha() == before
        await sim.wait_idle()
        assert [call["status"] for call in await merge_calls(world)] == [405]
        assert not (await sim.get_pr(world.repo, number))["merged"]


# -- #15 closed right as the merge is attempted --------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 405])
async def test_pr_closed_as_the_merge_call_is_made_is_cancelled(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path, status: int
) -> None:
    """docs/faults.md #15: the bot's merge call is held by the forge; meanwhile a person closes the PR, and the
    call is answered 404 (Gitea's answer for a closed PR) or a bare 405. The bot does not take the answer at
    its word (no failure, no second merge call): it reads the PR again and cancels the entry as closed."""
    async for world in make_world(sim, engine, tmp_path, strategy="pr-branch"):
        number = await branched_pr(world)
        before = await world.main_sha()
        await sim.fault(
            kind="http",
            method="POST",
            path=MERGE_PATH.format(repo=world.repo),
            status=status,
            message="" if status == 405 else "The target couldn't be found.",
            latency_s=3,
            count=1,
        )
        await world.queue(number)
        await attempt_in(world, "merging")  # the bot has decided to merge and its call is on its way
        await sim.api("PATCH", f"/repos/{world.repo}/pulls/{number}", token=world.alice.token, json={"state": "closed"})
        entry = await world.final_entry(number)
        assert (entry.state, entry.reason) == ("cancelled", "pr_closed"), entry
        assert await world.main_sha() == before
        assert [call["status"] for call in await merge_calls(world)] == [status]
        assert not (await sim.get_pr(world.repo, number))["merged"]


# -- #27 write access revoked before the merge ---------------------------------------------------------------


async def test_write_access_revoked_before_the_merge_fails_the_entry(world: World) -> None:
    """docs/faults.md #27: maint queues the PR, then loses write access while its candidate is in CI. The
    bot reads the approver's access again (not from its cache) right before moving the base: the entry
    fails as ``permission_revoked`` and nothing lands."""
    await world.sim.set_ci(world.repo, "sh ci.sh", context="ci/test", delay_s=2)
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    before = await world.main_sha()
    await world.queue(number, by=world.maint)
    await world.in_state(number, "testing")
    await world.sim.add_collaborator(world.repo, world.maint.login, "read", as_user=world.owner)
    entry = await world.final_entry(number)
    assert (entry.state, entry.reason) == ("failed", "permission_revoked"), entry
    assert entry.reason_detail["by"] == world.maint.login
    await world.says(number, "no longer has write access")
    assert await world.main_sha() == before
    assert await pushes_to(world, "main", world.bot.login) == []
    assert await merge_calls(world) == []
    assert not (await world.sim.get_pr(world.repo, number))["merged"]


# -- #28 the bot's own comments -------------------------------------------------------------------------------


async def test_the_bots_own_comment_quoting_the_command_queues_nothing(world: World) -> None:
    """docs/faults.md #28: a comment by the bot's own user (it knows itself from ``GET /user``) that holds
    ``/merge`` at the start of a line, as help text would, is not a command: not from its webhook, not from
    the reconciler's pass over the comments. A person's ``/merge`` posted after it on another PR is acted on,
    and one reconciler pass over both comments is waited for before looking."""
    await world.reconciled()
    target = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    other = await world.open_pr("feature-c", {"c.txt": "c\n"})
    help_text = "This PR was not queued. To queue it at its current head, comment:\n\n/merge\n"
    await world.sim.comment(world.repo, target, world.bot, help_text)
    await world.sim.comment(world.repo, target, world.bot, "/merge")
    await world.queue(other)
    assert (await world.final_entry(other)).state == "merged"  # later webhooks were handled

    async def reconciled_past_the_comments() -> bool:
        async with world.engine.connect() as connection:
            last = await connection.scalar(select(Repository.last_comment_id).where(Repository.name == "app"))
        newest = max(int(c["id"]) for c in await world.sim.api("GET", f"/repos/{world.repo}/issues/comments"))
        return bool(last and last >= newest)

    await eventually(reconciled_past_the_comments, within=30, what="a reconciler pass over the comments")
    assert await world.entry(target) is None
    bodies = await world.comments(target)
    assert bodies == [help_text, "/merge"]  # no answer, no refusal
    for comment in await world.sim.api("GET", f"/repos/{world.repo}/issues/{target}/comments"):
        assert not await world.sim.api("GET", f"/repos/{world.repo}/issues/comments/{comment['id']}/reactions")


# -- #19 an unreliable forge ----------------------------------------------------------------------------------


async def test_rate_limited_reads_wait_for_retry_after_and_the_queue_drains(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    """docs/faults.md #19: reads of the base branch are answered 429 with ``Retry-After: 1`` three times. The
    client waits at least what the forge asks for before the next try, the reads go through, and the PR
    merges."""
    async for world in make_world(sim, engine, tmp_path):
        number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
        path = f"/api/v1/repos/{world.repo}/branches/main"
        since = max((e["seq"] for e in await sim.log()), default=0)
        await sim.fault(kind="http", method="GET", path=path, status=429, headers={"Retry-After": "1"}, count=3)
        await world.queue(number)
        entry = await world.final_entry(number)
        assert entry.state == "merged"
        assert await world.main_sha() == entry.merged_sha
        reads = [e for e in await sim.log("api", since=since) if e["method"] == "GET" and e["path"] == path]
        limited = [i for i, e in enumerate(reads) if e["status"] == 429]
        assert len(limited) == 3
        for i in limited:  # the next read of the branch came no sooner than Retry-After said
            assert reads[i + 1]["time"] - reads[i]["time"] >= 0.9, reads[i : i + 2]


async def test_rate_limited_merge_call_that_went_through_is_not_repeated(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path
) -> None:
    """docs/faults.md #19: the merge call is carried out and then answered 429 with ``Retry-After``. A write
    is never repeated on the strength of its answer: the bot reads the PR and the branch again, counts the
    merge, and exactly one merge call reached the forge."""
    async for world in make_world(sim, engine, tmp_path, strategy="pr-branch"):
        number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
        await sim.fault(
            kind="http",
            method="POST",
            path=MERGE_PATH.format(repo=world.repo),
            status=429,
            headers={"Retry-After": "1"},
            when="after",
            count=1,
        )
        await world.queue(number)
        entry = await world.final_entry(number)
        assert entry.state == "merged"
        assert await world.main_sha() == entry.merged_sha
        assert [call["status"] for call in await merge_calls(world)] == [429]


class Relay:
    """A TCP relay in front of the simulator that can go away: while it is down its port refuses connections,
    and the connections it carried are cut."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()
        self.carried = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port, reuse_address=True)

    async def down(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.links):
            writer.transport.abort()
        await self.server.wait_closed()
        self.server = None

    async def refuses(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except ConnectionRefusedError:
            return True
        writer.close()
        return False

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.carried += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.links.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self.links.difference_update((writer, up_writer))
            for w in (writer, up_writer):
                w.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()


@pytest.fixture
async def relay(sim: SimHandle) -> AsyncIterator[Relay]:
    relay = Relay(int(sim.url.rsplit(":", 1)[1]))
    await relay.up()
    yield relay
    if relay.server is not None:
        await relay.down()


async def test_forge_refusing_connections_for_a_while_the_queue_still_drains(
    sim: SimHandle, engine: AsyncEngine, tmp_path: Path, relay: Relay
) -> None:
    """docs/faults.md #19: the bot reaches the forge through a relay that goes away for a second while the
    candidate is in CI (connections refused, open ones cut), twice. The bot's reads are tried again, it
    neither crashes nor gives up on the entry, and both PRs merge, each once."""
    extra = {"MERGE_BOT_GITEA_URL": relay.url}
    async for world in make_world(sim, engine, tmp_path, extra=extra):
        await sim.set_ci(world.repo, "sh ci.sh", context="ci/test", delay_s=3)
        first = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
        second = await world.open_pr("feature-c", {"c.txt": "c\n"})
        await world.queue(first)
        await world.queue(second)
        for number in (first, second):
            await world.in_state(number, "testing")
            await relay.down()
            assert await relay.refuses()
            await asyncio.sleep(1.0)  # the outage itself, not a wait for the bot
            await relay.up()
        merged = [await world.final_entry(number) for number in (first, second)]
        assert [e.state for e in merged] == ["merged", "merged"]
        assert await world.main_sha() == merged[1].merged_sha
        assert [p["ok"] for p in await pushes_to(world, "main", world.bot.login)] == [True, True]
        marks = [call for call in await merge_calls(world) if call["status"] == 200]
        assert len(marks) == 2  # each PR marked merged once
