"""How people drive the queue (issue 5): commands, the label, Gitea's button, permissions, priorities and
dependencies — each through the simulator, as a user of Gitea's web UI would."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gitea_sim.testing import SimHandle, SimUser
from tests.e2e.conftest import World, eventually, make_world

pytestmark = pytest.mark.slow


async def label(world: World, number: int, name: str, by: SimUser) -> None:
    await world.sim.api("POST", f"/repos/{world.repo}/issues/{number}/labels", token=by.token, json={"labels": [name]})


async def next_entry(world: World, number: int, after_id: int) -> None:
    async def check() -> bool:
        entry = await world.entry(number)
        return entry is not None and entry.id != after_id

    await eventually(check, within=30, what=f"a new entry for #{number}")


async def labels_of(world: World, number: int) -> list[str]:
    data = await world.sim.api("GET", f"/repos/{world.repo}/issues/{number}/labels")
    return [str(item["name"]) for item in data]


@pytest.mark.parametrize(
    ("who", "accepted"), [("reader", False), ("stranger", False), ("maint", True), ("owner", True), ("author", False)]
)
async def test_permission_matrix(sim: SimHandle, engine: AsyncEngine, tmp_path: Path, who: str, accepted: bool) -> None:
    async for world in make_world(sim, engine, tmp_path):
        stranger = await sim.create_user("stranger")
        # The PR's own author may only read (as a fork author without write access would).
        author = await sim.create_user("author")
        await sim.add_collaborator(world.repo, author.login, "read", as_user=world.owner)
        await sim.add_collaborator(world.repo, "alice", "write", as_user=world.owner)
        number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"}, author=world.alice)
        users = {
            "reader": world.reader,
            "stranger": stranger,
            "maint": world.maint,
            "owner": world.owner,
            "author": author,
        }
        await world.queue(number, by=users[who])
        if accepted:
            assert (await world.final_entry(number)).state == "merged"
        else:
            await world.says(number, "write access")
            assert await world.entry(number) is None


async def test_label_queues_and_is_removed_after_the_merge(world: World) -> None:
    await world.sim.create_label(world.repo, "merge-queue")
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await label(world, number, "merge-queue", world.maint)
    entry = await world.final_entry(number)
    assert (entry.state, entry.trigger, entry.approved_by) == ("merged", "label", "maint")

    async def gone() -> bool:
        return "merge-queue" not in await labels_of(world, number)

    await eventually(gone, within=10, what="the bot to remove the queue label")


async def test_label_whose_webhook_was_lost_is_queued_as_the_labeller(world: World) -> None:
    """The label event is dropped; the owner then edits the PR (an event whose sender is not the labeller).
    The arrival of the label must be attributed to who added it (the PR's timeline), never to that sender."""
    await world.sim.create_label(world.repo, "merge-queue")
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await world.reconciled()
    await world.sim.fault(kind="webhook", action="drop", event="pull_request_label", count=1)
    await label(world, number, "merge-queue", world.maint)
    await world.sim.api(
        "PATCH", f"/repos/{world.repo}/pulls/{number}", token=world.owner.token, json={"title": "Feature A"}
    )
    entry = await world.final_entry(number, within=60)
    assert (entry.state, entry.trigger, entry.approved_by) == ("merged", "label", "maint")
    assert [e for e in await world.sim.log("delivery_fault") if e["action"] == "drop"]
    assert not [body for body in await world.comments(number) if "not listening" in body]


async def test_queue_label_is_credited_to_who_added_it_not_to_the_next_labeller(world: World) -> None:
    """Gitea's label events carry the whole label set: the one that reveals the queue label (its own event was
    lost) may come from someone who added another label. maint adds the queue label and loses write access;
    alice (write) then adds `bug`: the PR must be refused as maint's, not queued as alice's."""
    await world.sim.create_label(world.repo, "merge-queue")
    await world.sim.create_label(world.repo, "bug")
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await world.reconciled()
    await world.sim.fault(kind="webhook", action="drop", event="pull_request_label", count=1)
    await label(world, number, "merge-queue", world.maint)
    await world.sim.add_collaborator(world.repo, "maint", "read", as_user=world.owner)
    await label(world, number, "bug", world.alice)
    await world.says(number, "@maint", "write access")
    assert await world.entry(number) is None


async def test_queue_label_removed_while_its_webhook_was_lost_still_dequeues(world: World) -> None:
    """The label's departure is a state: a PR queued by the label that no longer carries it is dequeued
    when the reconciler next looks, even though the removal's own event never arrived."""
    await world.sim.set_ci(world.repo, "sh ci.sh", context="ci/test", delay_s=4.0)
    await world.sim.create_label(world.repo, "merge-queue")
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await label(world, number, "merge-queue", world.maint)
    await world.in_state(number, "testing")
    await world.sim.fault(kind="webhook", action="drop", event="pull_request_label", count=1)
    ids = {item["name"]: item["id"] for item in await world.sim.api("GET", f"/repos/{world.repo}/labels")}
    await world.sim.api(
        "DELETE", f"/repos/{world.repo}/issues/{number}/labels/{ids['merge-queue']}", token=world.maint.token
    )
    entry = await world.final_entry(number)
    assert (entry.state, entry.reason) == ("cancelled", "cancelled_by_user")
    assert [e for e in await world.sim.log("delivery_fault") if e["action"] == "drop"]


async def test_label_from_a_reader_changes_nothing(world: World) -> None:
    await world.sim.create_label(world.repo, "merge-queue")
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    # A read-only user cannot label in Gitea; the owner labels on behalf of nobody with write access is the
    # positive case above. Here the label arrives from a user whose write access was just revoked.
    await world.sim.add_collaborator(world.repo, "maint", "read", as_user=world.owner)
    await label(world, number, "merge-queue", world.owner)
    assert (await world.final_entry(number)).state == "merged"  # the owner may
    second = await world.open_pr("feature-b", {"other.txt": "b\n"})
    await world.queue(second, by=world.maint)
    await world.says(second, "write access")


async def test_removing_the_label_dequeues(world: World) -> None:
    await world.sim.set_ci(world.repo, "sh ci.sh", context="ci/test", delay_s=2.0)
    await world.sim.create_label(world.repo, "merge-queue")
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await label(world, number, "merge-queue", world.maint)
    await world.in_state(number, "testing")
    ids = {item["name"]: item["id"] for item in await world.sim.api("GET", f"/repos/{world.repo}/labels")}
    await world.sim.api(
        "DELETE", f"/repos/{world.repo}/issues/{number}/labels/{ids['merge-queue']}", token=world.maint.token
    )
    entry = await world.final_entry(number)
    assert (entry.state, entry.reason) == ("cancelled", "cancelled_by_user")


async def test_commands_cancel_retry_status(world: World) -> None:
    # The candidate's CI run is held back (no status until released), so the commands come while it is under
    # test however slow the machine; CI runs on the candidates only, so the held run is the candidate's.
    await world.sim.set_ci(world.repo, "sh ci.sh", context="ci/test", delay_s=0.5, branches=["merge-bot/**"])
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await world.sim.fault(kind="ci", action="silent", repo=world.repo, count=1)
    await world.queue(number)
    await world.in_state(number, "testing")
    await world.queue(number, "/merge status")
    await world.says(number, "Being tested now")
    await world.queue(number, "/merge cancel")
    entry = await world.final_entry(number)
    assert (entry.state, entry.reason) == ("cancelled", "cancelled_by_user")
    await world.sim.release_ci(world.repo)  # the cancelled candidate's run reports; nothing is built on it
    await world.queue(number, "/merge retry")
    await next_entry(world, number, entry.id)
    assert (await world.final_entry(number)).state == "merged"


async def test_ignored_commands(world: World) -> None:
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await world.queue(number, "> /merge\n\n```\n/merge\n```\nplease don't")
    comment = await world.sim.comment(world.repo, number, world.maint, "looks good")
    await world.sim.api(
        "PATCH",
        f"/repos/{world.repo}/issues/comments/{comment['id']}",
        token=world.maint.token,
        json={"body": "/merge"},
    )
    await world.says(number, "edited comments are ignored")
    assert await world.entry(number) is None


async def test_priority_order(world: World) -> None:
    # CI on the candidates only: a PR green on its own head and on the base tip would land as it is, at once.
    await world.sim.set_ci(world.repo, "sh ci.sh", context="ci/test", delay_s=1.0, branches=["merge-bot/**"])
    first = await world.open_pr("first", {"first.txt": "1\n"})
    low = await world.open_pr("low", {"low.txt": "1\n"})
    high = await world.open_pr("high", {"high.txt": "1\n"})
    await world.queue(first)
    await world.in_state(first, "testing")
    await world.queue(low)
    await world.queue(high, "/merge p=5")
    finished = {n: (await world.final_entry(n)).finished_at for n in (first, low, high)}
    assert finished[first] < finished[high] < finished[low]  # no preemption below the urgent threshold


async def test_priority_above_the_ceiling_needs_an_admin(world: World) -> None:
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await world.queue(number, "/merge p=50")
    await world.says(number, "priority")
    assert await world.entry(number) is None
    await world.queue(number, "/merge p=50", by=world.owner)
    assert (await world.final_entry(number)).state == "merged"


async def test_dependency_chain_waits_then_merges(world: World) -> None:
    base = await world.open_pr("base", {"base.txt": "1\n"})
    top = await world.open_pr("top", {"top.txt": "1\n"}, body=f"Needs the base.\n\nDepends-On: #{base}\n")
    await world.queue(top)
    await world.in_state(top, "waiting")
    await world.says(top, "waiting for", f"#{base}")
    await world.queue(base)
    first = await world.final_entry(base)
    second = await world.final_entry(top)
    assert first.state == second.state == "merged"
    assert first.finished_at < second.finished_at


async def test_cross_repository_dependency(sim: SimHandle, engine: AsyncEngine, tmp_path: Path) -> None:
    async for world in make_world(sim, engine, tmp_path, more_repos=("lib",)):
        lib = "owner/lib"
        dep = await world.open_pr("lib-change", {"lib.txt": "1\n"}, repo=lib)
        app = await world.open_pr("app-change", {"uses-lib.txt": "1\n"})
        await world.queue(app, f"/merge after {lib}#{dep}")
        await world.in_state(app, "waiting")
        await world.queue(dep, repo=lib)
        assert (await world.final_entry(dep, repo=lib)).state == "merged"
        assert (await world.final_entry(app)).state == "merged"


async def test_dependency_cycle_blocks_with_a_comment_and_unblocks_when_fixed(world: World) -> None:
    a = await world.open_pr("a", {"a.txt": "1\n"})
    b = await world.open_pr("b", {"b.txt": "1\n"}, body=f"Depends-On: #{a}\n")
    await world.queue(a, f"/merge after #{b}")
    await world.in_state(a, "waiting")
    await world.queue(b)
    await world.says(b, "cycle", f"#{a}", f"#{b}")
    # Fix the cause: drop the Depends-On line from b's description. No new command is needed.
    await world.sim.api(
        "PATCH", f"/repos/{world.repo}/pulls/{b}", token=world.alice.token, json={"body": "Standalone."}
    )
    assert (await world.final_entry(b)).state == "merged"
    assert (await world.final_entry(a)).state == "merged"


async def test_dependency_closed_without_merge_blocks(world: World) -> None:
    dep = await world.open_pr("dep", {"dep.txt": "1\n"})
    top = await world.open_pr("top", {"top.txt": "1\n"})
    await world.queue(top, f"/merge after #{dep}")
    await world.in_state(top, "waiting")
    await world.sim.api("PATCH", f"/repos/{world.repo}/pulls/{dep}", token=world.alice.token, json={"state": "closed"})
    await world.says(top, "closed without being merged", f"#{dep}")


async def test_gitea_merge_button_is_queued_and_tested(world: World) -> None:
    await world.sim.protect(
        world.repo,
        "main",
        enable_status_check=True,
        status_check_contexts=["merge-bot"],
        enable_push=True,
        push_whitelist_usernames=["merge-bot"],
    )
    await world.reconciled()
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})

    async def press() -> int | None:  # 405 "try again later" while Gitea still checks mergeability
        status = await world.sim.merge(world.repo, number, world.maint, do="merge", merge_when_checks_succeed=True)
        return None if status == 405 else status

    assert await eventually(press, within=10, what="the button to be accepted") == 201  # scheduled, not merged
    entry = await world.final_entry(number, within=60)
    assert (entry.state, entry.trigger, entry.approved_by) == ("merged", "button", "maint")
    assert await world.main_sha() == entry.merged_sha


async def test_draft_is_refused(world: World) -> None:
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"}, title="WIP: not done yet")
    await world.queue(number)
    await world.says(number, "draft")
    assert await world.entry(number) is None


async def approve(world: World, number: int, by: SimUser) -> None:
    await world.sim.api(
        "POST", f"/repos/{world.repo}/pulls/{number}/reviews", token=by.token, json={"event": "APPROVED"}
    )


PROTECTED = {"required_approvals": 1, "enable_push": True, "push_whitelist_usernames": ["merge-bot"]}


async def test_missing_approvals_are_refused(world: World) -> None:
    await world.sim.protect(world.repo, "main", **PROTECTED)
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await world.queue(number)
    await world.says(number, "requires 1 approving review")
    assert await world.entry(number) is None
    await approve(world, number, world.maint)
    await world.queue(number)
    assert (await world.final_entry(number)).state == "merged"


async def test_entry_can_wait_for_approvals(sim: SimHandle, engine: AsyncEngine, tmp_path: Path) -> None:
    async for world in make_world(sim, engine, tmp_path, extra={"MERGE_BOT_WAIT_FOR_APPROVALS": "true"}):
        await sim.protect(world.repo, "main", **PROTECTED)
        number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
        await world.queue(number)
        await world.in_state(number, "waiting")
        await approve(world, number, world.maint)
        assert (await world.final_entry(number)).state == "merged"


async def test_team_allow_list(sim: SimHandle, engine: AsyncEngine, tmp_path: Path) -> None:
    async for world in make_world(sim, engine, tmp_path, extra={"MERGE_BOT_ALLOWED_TEAMS": "acme/mergers"}):
        await sim.create_org(world.owner, "acme")
        team = await sim.api("POST", "/orgs/acme/teams", token=world.owner.token, json={"name": "mergers"})
        number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
        await world.queue(number)  # maint has write access, but is not in the team
        await world.says(number, "allow-list")
        assert await world.entry(number) is None
        await sim.api("PUT", f"/teams/{team['id']}/members/maint", token=world.owner.token)
        await world.queue(number, "/merge p=1")  # a new comment: a refusal is never cached
        entry = await world.final_entry(number, within=90)
        assert entry.state == "merged"
