"""Merging, scheduled merges and updates held to Gitea's integration tests (tests/integration/pull_merge_test.go,
pull_update_test.go) and to services/pull and services/automerge. Each test names the Gitea test it follows."""

from __future__ import annotations

from gitea_sim.testing import SimHandle

from .conftest import Receiver, Team
from .test_merge import bare, merge, move_main, open_pr


async def timeline_types(g: SimHandle, repo: str, index: int) -> list[str]:
    return [t["type"] for t in await g.api("GET", f"/repos/{repo}/issues/{index}/timeline")]


async def test_merged_branch_deletion_retargets_child_prs(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/pull_merge_test.go TestPullRetargetChildOnBranchDelete: with
    RETARGET_CHILDREN_ON_MERGE (default true), deleting the merged PR's head retargets the PR stacked on it
    to the merged PR's base, with a change_target_branch entry and an `edited` webhook."""
    base_pr = await open_pr(gitea, team, "base-pr", {"base.txt": "1\n"})
    await gitea.push_commit(team.repo, team.writer, "child-pr", {"child.txt": "1\n"}, base="base-pr")
    child = await gitea.create_pr(team.repo, team.writer, "child-pr", base="base-pr", title="Child")
    await gitea.wait_idle()
    status, _ = await merge(gitea, team.repo, base_pr["number"], team.owner, Do="merge",
                            delete_branch_after_merge=True)
    assert status == 200
    await gitea.wait_idle()
    assert await bare(gitea, team.repo).branch_sha("base-pr") is None
    got = await gitea.get_pr(team.repo, child["number"])
    assert (got["state"], got["base"]["ref"], got["mergeable"]) == ("open", "main", True)
    timeline = await gitea.api("GET", f"/repos/{team.repo}/issues/{child['number']}/timeline")
    change = [(t["old_ref"], t["new_ref"]) for t in timeline if t["type"] == "change_target_branch"]
    assert change == [("base-pr", "main")]
    assert "delete_branch" in await timeline_types(gitea, team.repo, base_pr["number"])
    assert (await merge(gitea, team.repo, child["number"], team.owner, Do="merge"))[0] == 200


async def test_retarget_webhook_says_what_the_base_was(gitea: SimHandle, team: Team, receiver: Receiver) -> None:
    """Follows services/pull/pull.go ChangeTargetBranch (notify PullRequestChangeTargetBranch): the retargeted
    child's `edited` event carries changes.ref.from."""
    await gitea.add_hook(team.repo, receiver.url, "s", events=["pull_request"])
    base_pr = await open_pr(gitea, team, "base-pr", {"base.txt": "1\n"})
    await gitea.push_commit(team.repo, team.writer, "child-pr", {"child.txt": "1\n"}, base="base-pr")
    child = await gitea.create_pr(team.repo, team.writer, "child-pr", base="base-pr", title="Child")
    await gitea.wait_idle()
    await merge(gitea, team.repo, base_pr["number"], team.owner, Do="squash", delete_branch_after_merge=True)
    got = await receiver.wait_for(lambda r: r.json().get("action") == "edited")
    body = got.json()
    assert (body["number"], body["changes"], body["pull_request"]["base"]["ref"]) == (
        child["number"], {"ref": {"from": "base-pr"}}, "main")


async def test_merge_without_branch_deletion_leaves_children_alone(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/pull_merge_test.go TestPullDontRetargetChildOnWrongRepo (the part that applies
    without forks): no branch deletion, no retargeting."""
    base_pr = await open_pr(gitea, team, "base-pr", {"base.txt": "1\n"})
    await gitea.push_commit(team.repo, team.writer, "child-pr", {"child.txt": "1\n"}, base="base-pr")
    child = await gitea.create_pr(team.repo, team.writer, "child-pr", base="base-pr", title="Child")
    await gitea.wait_idle()
    assert (await merge(gitea, team.repo, base_pr["number"], team.owner, Do="merge"))[0] == 200
    assert (await gitea.get_pr(team.repo, child["number"]))["base"]["ref"] == "base-pr"


async def test_auto_merge_after_commit_status_succeeds(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/pull_merge_test.go TestPullAutoMergeAfterCommitStatusSucceed: the scheduled
    merge waits while the required context is pending and merges once it succeeds."""
    await gitea.protect(team.repo, "main", enable_status_check=True, status_check_contexts=["gitea/actions"])
    pr = await open_pr(gitea, team, "auto", {"a.txt": "1\n"})
    status, _ = await merge(gitea, team.repo, pr["number"], team.owner, Do="merge", merge_when_checks_succeed=True)
    assert status == 201
    await gitea.set_status(team.repo, pr["head"]["sha"], "pending", "gitea/actions")
    await gitea.wait_idle()
    assert (await gitea.get_pr(team.repo, pr["number"]))["merged"] is False
    await gitea.set_status(team.repo, pr["head"]["sha"], "success", "gitea/actions")
    await gitea.wait_idle()
    got = await gitea.get_pr(team.repo, pr["number"])
    assert got["merged"] is True and got["merged_by"]["login"] == "alice"


async def test_auto_merge_after_status_and_approval(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/pull_merge_test.go TestPullAutoMergeAfterCommitStatusSucceedAndApproval: green
    checks are not enough while an approval is missing; the approval itself triggers the merge."""
    await gitea.protect(team.repo, "main", enable_status_check=True, status_check_contexts=["gitea/actions"],
                        required_approvals=1)
    pr = await open_pr(gitea, team, "auto", {"a.txt": "1\n"})
    status, _ = await merge(gitea, team.repo, pr["number"], team.writer, Do="merge", merge_when_checks_succeed=True)
    assert status == 201
    await gitea.set_status(team.repo, pr["head"]["sha"], "success", "gitea/actions")
    await gitea.wait_idle()
    assert (await gitea.get_pr(team.repo, pr["number"]))["merged"] is False
    await gitea.api("POST", f"/repos/{team.repo}/pulls/{pr['number']}/reviews", token=team.owner.token,
                    json={"event": "APPROVED"})
    await gitea.wait_idle()
    assert (await gitea.get_pr(team.repo, pr["number"]))["merged"] is True


async def test_auto_merge_on_already_green_checks_is_scheduled(gitea: SimHandle, team: Team) -> None:
    """Follows routers/api/v1/repo/pull.go MergePullRequest and services/automerge ScheduleAutoMerge (Gitea
    >= 1.22): green checks still give 201 and a pull_scheduled_merge entry; the queue merges right after, with
    the scheduled style and the branch deletion asked for."""
    await gitea.protect(team.repo, "main", enable_status_check=True, status_check_contexts=["ci/*"])
    pr = await open_pr(gitea, team, "green", {"g.txt": "1\n"})
    await gitea.set_status(team.repo, pr["head"]["sha"], "success", "ci/test")
    status, _ = await merge(gitea, team.repo, pr["number"], team.writer, Do="squash",
                            merge_when_checks_succeed=True, delete_branch_after_merge=True)
    assert status == 201
    await gitea.wait_idle()
    got = await gitea.get_pr(team.repo, pr["number"])
    assert got["merged"] is True
    git = bare(gitea, team.repo)
    info = await git.commit("main")
    assert info is not None and len(info.parents) == 1  # squashed
    assert await git.branch_sha("green") is None
    types = await timeline_types(gitea, team.repo, pr["number"])
    assert types.index("pull_scheduled_merge") < types.index("merge_pull")


async def test_auto_merge_of_a_conflicting_pr_waits(gitea: SimHandle, team: Team) -> None:
    """Follows services/automerge handlePullRequestAutoMerge: CheckPullMergeable fails on a conflict, so the
    PR stays open and scheduled (no error answer: the 201 was given already)."""
    pr = await open_pr(gitea, team, "clash", {"README.md": "feature\n"})
    await move_main(gitea, team, {"README.md": "main\n"})
    status, body = await merge(gitea, team.repo, pr["number"], team.writer, Do="merge",
                               merge_when_checks_succeed=True)
    assert (status, body["message"]) == (405, "Please try again later")  # CheckPullMergeable runs first
    await gitea.push_commit(team.repo, team.writer, "clash", {"README.md": "main\n", "x.txt": "1\n"})
    await gitea.wait_idle()
    assert (await gitea.get_pr(team.repo, pr["number"]))["mergeable"] is True
    status, _ = await merge(gitea, team.repo, pr["number"], team.writer, Do="merge", merge_when_checks_succeed=True)
    assert status == 201
    await gitea.wait_idle()
    assert (await gitea.get_pr(team.repo, pr["number"]))["merged"] is True


async def test_conflicting_merge_answers_409_with_the_conflict(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/pull_merge_test.go TestConflictChecking: a PR that conflicts with its base is
    reported not mergeable; a forced attempt with stale state gives the conflict, not a merge."""
    pr = await open_pr(gitea, team, "conflict", {"README.md": "feature\n"})
    await move_main(gitea, team, {"README.md": "main\n"})
    got = await gitea.get_pr(team.repo, pr["number"])
    assert got["mergeable"] is False and got["merged"] is False
    status, _ = await merge(gitea, team.repo, pr["number"], team.owner, Do="merge")
    assert status == 405


async def test_squash_merge_commit_message(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/pull_merge_test.go TestPullSquash / TestPullSquashMessage: one commit on the
    base, titled '<title> (#<index>)' by default, authored by the PR poster."""
    pr = await open_pr(gitea, team, "sq", {"s.txt": "1\n"}, title="Squash me")
    await gitea.push_commit(team.repo, team.writer, "sq", {"s.txt": "2\n"}, message="second")
    await gitea.wait_idle()
    assert (await merge(gitea, team.repo, pr["number"], team.owner, Do="squash"))[0] == 200
    git = bare(gitea, team.repo)
    tip = await git.branch_sha("main")
    assert tip is not None
    info = await git.commit(tip)
    assert info is not None
    assert info.message.startswith(f"Squash me (#{pr['number']})")
    assert info.author.name == "bob"
    assert len(info.parents) == 1


async def test_merge_style_not_allowed(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/pull_merge_test.go TestPullMergeStyles (disabled style) and MergePullRequest's
    ErrInvalidMergeStyle answer."""
    await gitea.api("PATCH", f"/repos/{team.repo}", json={"allow_rebase": False})
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    status, body = await merge(gitea, team.repo, pr["number"], team.owner, Do="rebase")
    assert (status, body["message"]) == (405, "rebase is not allowed an allowed merge style for this repository")


async def test_update_pull_by_merge(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/pull_update_test.go TestAPIPullUpdate: the PR is behind its base; update
    (default style merge) answers 200 and the head then contains the base (0 commits behind)."""
    pr = await open_pr(gitea, team, "behind", {"b.txt": "1\n"})
    base = await move_main(gitea, team, {"m.txt": "1\n"})
    git = bare(gitea, team.repo)
    assert not await git.is_ancestor(base, pr["head"]["sha"])
    await gitea.api("POST", f"/repos/{team.repo}/pulls/{pr['number']}/update", token=team.writer.token)
    await gitea.wait_idle()
    got = await gitea.get_pr(team.repo, pr["number"])
    assert await git.is_ancestor(base, got["head"]["sha"])
    info = await git.commit(got["head"]["sha"])
    assert info is not None and info.parents == [pr["head"]["sha"], base]


async def test_update_pull_by_rebase(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/pull_update_test.go TestAPIPullUpdateByRebase: style=rebase replays the head
    on the base (no merge commit)."""
    pr = await open_pr(gitea, team, "behind", {"b.txt": "1\n"})
    base = await move_main(gitea, team, {"m.txt": "1\n"})
    await gitea.api("POST", f"/repos/{team.repo}/pulls/{pr['number']}/update", token=team.writer.token,
                    params={"style": "rebase"})
    await gitea.wait_idle()
    got = await gitea.get_pr(team.repo, pr["number"])
    info = await bare(gitea, team.repo).commit(got["head"]["sha"])
    assert info is not None and info.parents == [base]


async def test_update_merged_pull_is_422(gitea: SimHandle, team: Team) -> None:
    """Follows routers/api/v1/repo/pull.go UpdatePullRequest: a merged (or closed) PR answers 422."""
    pr = await open_pr(gitea, team, "done", {"d.txt": "1\n"})
    assert (await merge(gitea, team.repo, pr["number"], team.owner, Do="merge"))[0] == 200
    await gitea.api("POST", f"/repos/{team.repo}/pulls/{pr['number']}/update", token=team.owner.token, expect=422)
