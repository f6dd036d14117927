"""Merging: every Do style makes the commit Gitea makes, and the edge cases answer with Gitea's status codes."""

from __future__ import annotations

from typing import Any

import pytest

from gitea_sim.gitrepo import GitRepo
from gitea_sim.testing import SimHandle, SimUser

from .conftest import Team


async def open_pr(
    g: SimHandle, team: Team, branch: str, files: dict[str, str | None], user: SimUser | None = None, title: str = ""
) -> dict[str, Any]:
    user = user or team.writer
    await g.push_commit(team.repo, user, branch, files, base="main", message=f"change on {branch}")
    pr = await g.create_pr(team.repo, user, branch, title=title or f"PR {branch}")
    await g.wait_idle()
    return pr


def bare(g: SimHandle, repo: str) -> GitRepo:
    owner, name = repo.split("/")
    r = g.sim.state.repo_by_name(owner, name)
    assert r is not None
    return g.sim.git(r)


async def merge(g: SimHandle, repo: str, index: int, user: SimUser, **body: Any) -> tuple[int, Any]:
    status, data, _ = await g.request("POST", f"/api/v1/repos/{repo}/pulls/{index}/merge", token=user.token, json=body)
    return status, data


async def move_main(g: SimHandle, team: Team, files: dict[str, str | None]) -> str:
    sha = await g.push_commit(team.repo, team.owner, "main", files, message="main moves")
    await g.wait_idle()
    return sha


@pytest.mark.parametrize("style", ["merge", "squash", "rebase", "rebase-merge"])
async def test_each_style_lands_the_change_on_a_diverged_base(gitea: SimHandle, team: Team, style: str) -> None:
    pr = await open_pr(gitea, team, "feat", {"feature.txt": "feature\n"})
    base_before = await move_main(gitea, team, {"other.txt": "other\n"})
    status, body = await merge(gitea, team.repo, pr["number"], team.writer, Do=style)
    assert (status, body) == (200, None)
    git = bare(gitea, team.repo)
    tip = await git.branch_sha("main")
    assert tip is not None
    info = await git.commit(tip)
    assert info is not None
    files = (await git.git("ls-tree", "--name-only", tip)).split()
    assert {"feature.txt", "other.txt"} <= set(files)
    head = pr["head"]["sha"]
    expected_parents = {"merge": [base_before, head], "squash": [base_before], "rebase": [base_before]}
    if style in expected_parents:
        assert info.parents == expected_parents[style]
    else:
        assert info.parents[0] == base_before and len(info.parents) == 2
        assert info.parents[1] != head  # the rebased copy, not the original head
    if style == "squash":
        assert info.message.startswith(f"PR feat (#{pr['number']})")
    got = await gitea.get_pr(team.repo, pr["number"])
    assert got["merged"] and got["state"] == "closed"
    assert got["merge_commit_sha"] == tip
    assert got["merged_by"]["login"] == "bob"


async def test_fast_forward_only(gitea: SimHandle, team: Team) -> None:
    pr = await open_pr(gitea, team, "ff", {"ff.txt": "1\n"})
    status, _ = await merge(
        gitea, team.repo, pr["number"], team.writer, Do="fast-forward-only", head_commit_id=pr["head"]["sha"]
    )
    assert status == 200
    assert await bare(gitea, team.repo).branch_sha("main") == pr["head"]["sha"]


async def test_fast_forward_only_on_a_diverged_base_is_an_error(gitea: SimHandle, team: Team) -> None:
    pr = await open_pr(gitea, team, "ff", {"ff.txt": "1\n"})
    before = await move_main(gitea, team, {"x.txt": "x\n"})
    status, _ = await merge(gitea, team.repo, pr["number"], team.writer, Do="fast-forward-only")
    # Gitea's API has no case for ErrMergeDivergingFastForwardOnly: it falls through to 500.
    assert status == 500
    assert await bare(gitea, team.repo).branch_sha("main") == before


async def test_rebase_when_already_up_to_date_fast_forwards(gitea: SimHandle, team: Team) -> None:
    pr = await open_pr(gitea, team, "up", {"u.txt": "1\n"})
    status, _ = await merge(gitea, team.repo, pr["number"], team.writer, Do="rebase")
    assert status == 200
    assert await bare(gitea, team.repo).branch_sha("main") == pr["head"]["sha"]


async def test_already_merged_is_405_and_get_merge_answers_204(gitea: SimHandle, team: Team) -> None:
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    status, _, _ = await gitea.request("GET", f"/api/v1/repos/{team.repo}/pulls/1/merge", token=team.writer.token)
    assert status == 404
    assert (await merge(gitea, team.repo, pr["number"], team.writer, Do="merge"))[0] == 200
    status, body = await merge(gitea, team.repo, pr["number"], team.writer, Do="merge")
    assert status == 405
    assert body["message"] == ""
    status, _, _ = await gitea.request("GET", f"/api/v1/repos/{team.repo}/pulls/1/merge", token=team.writer.token)
    assert status == 204


async def test_read_only_collaborator_cannot_merge(gitea: SimHandle, team: Team) -> None:
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    status, body = await merge(gitea, team.repo, pr["number"], team.reader, Do="merge")
    assert (status, body["message"]) == (405, "User not allowed to merge PR")


async def test_closed_pr_is_404_and_missing_pr_is_404(gitea: SimHandle, team: Team) -> None:
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    await gitea.api(
        "PATCH", f"/repos/{team.repo}/pulls/{pr['number']}", json={"state": "closed"}, token=team.writer.token
    )
    assert (await merge(gitea, team.repo, pr["number"], team.writer, Do="merge"))[0] == 404
    assert (await merge(gitea, team.repo, 99, team.writer, Do="merge"))[0] == 404


async def test_conflicting_pr_is_not_mergeable_and_answers_try_again_later(gitea: SimHandle, team: Team) -> None:
    pr = await open_pr(gitea, team, "feat", {"README.md": "feature version\n"})
    await move_main(gitea, team, {"README.md": "main version\n"})
    got = await gitea.get_pr(team.repo, pr["number"])
    assert got["mergeable"] is False
    status, body = await merge(gitea, team.repo, pr["number"], team.writer, Do="merge")
    assert (status, body["message"]) == (405, "Please try again later")


async def test_checking_state_answers_try_again_later(gitea: SimHandle, team: Team) -> None:
    await gitea.fault(kind="merge_check", delay_s=0.5)
    await gitea.push_commit(team.repo, team.writer, "feat", {"f.txt": "1\n"}, base="main")
    pr = await gitea.create_pr(team.repo, team.writer, "feat")
    assert pr["mergeable"] is False
    status, body = await merge(gitea, team.repo, pr["number"], team.writer, Do="merge")
    assert (status, body["message"]) == (405, "Please try again later")
    await gitea.wait_idle()
    assert (await merge(gitea, team.repo, pr["number"], team.writer, Do="merge"))[0] == 200


async def test_head_out_of_date_is_409(gitea: SimHandle, team: Team) -> None:
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    await gitea.push_commit(team.repo, team.writer, "feat", {"f.txt": "2\n"})
    await gitea.wait_idle()
    status, body = await merge(
        gitea, team.repo, pr["number"], team.writer, Do="merge", head_commit_id=pr["head"]["sha"]
    )
    assert (status, body["message"]) == (409, "head out of date")


async def test_disallowed_style_is_405(gitea: SimHandle, team: Team) -> None:
    await gitea.api("PATCH", f"/repos/{team.repo}", json={"allow_squash_merge": False})
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    status, body = await merge(gitea, team.repo, pr["number"], team.writer, Do="squash")
    assert status == 405
    assert body["message"] == "squash is not allowed an allowed merge style for this repository"
    status, _ = await merge(gitea, team.repo, pr["number"], team.writer, Do="bogus")
    assert status == 422


async def test_wip_title_is_405(gitea: SimHandle, team: Team) -> None:
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"}, title="WIP: not yet")
    assert pr["draft"] is True
    status, body = await merge(gitea, team.repo, pr["number"], team.writer, Do="merge")
    assert (status, body["message"]) == (405, "Work in progress PRs cannot be merged")


async def test_required_status_checks_block_until_green(gitea: SimHandle, team: Team) -> None:
    await gitea.protect(team.repo, "main", enable_push=True, enable_status_check=True, status_check_contexts=["ci/*"])
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    sha = pr["head"]["sha"]
    status, body = await merge(gitea, team.repo, pr["number"], team.writer, Do="merge")
    assert (status, body["message"]) == (405, "Not all required status checks successful")
    await gitea.set_status(team.repo, sha, "failure", "ci/test")
    assert (await merge(gitea, team.repo, pr["number"], team.writer, Do="merge"))[0] == 405
    await gitea.set_status(team.repo, sha, "success", "ci/test")  # latest per context wins
    assert (await merge(gitea, team.repo, pr["number"], team.writer, Do="merge"))[0] == 200


async def test_admin_force_merge_skips_protection(gitea: SimHandle, team: Team) -> None:
    await gitea.protect(team.repo, "main", enable_status_check=True, status_check_contexts=["ci/test"])
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    assert (await merge(gitea, team.repo, pr["number"], team.writer, Do="merge", force_merge=True))[0] == 405
    assert (await merge(gitea, team.repo, pr["number"], team.owner, Do="merge", force_merge=True))[0] == 200


async def test_required_approvals(gitea: SimHandle, team: Team) -> None:
    await gitea.protect(team.repo, "main", required_approvals=1)
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    status, body = await merge(gitea, team.repo, pr["number"], team.writer, Do="merge")
    assert (status, body["message"]) == (405, "Does not have enough approvals")
    status, body, _ = await gitea.request(
        "POST", f"/api/v1/repos/{team.repo}/pulls/1/reviews", token=team.writer.token, json={"event": "APPROVED"}
    )
    assert status == 422  # approving one's own PR
    await gitea.api(
        "POST", f"/repos/{team.repo}/pulls/1/reviews", token=team.owner.token, json={"event": "APPROVED", "body": "ok"}
    )
    assert (await merge(gitea, team.repo, pr["number"], team.writer, Do="merge"))[0] == 200


async def test_merge_whitelist(gitea: SimHandle, team: Team) -> None:
    await gitea.protect(team.repo, "main", enable_merge_whitelist=True, merge_whitelist_usernames=["alice"])
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    status, body = await merge(gitea, team.repo, pr["number"], team.writer, Do="merge")
    assert (status, body["message"]) == (405, "User not allowed to merge PR")
    assert (await merge(gitea, team.repo, pr["number"], team.owner, Do="merge"))[0] == 200


async def test_manually_merged(gitea: SimHandle, team: Team) -> None:
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    head = pr["head"]["sha"]
    status, body = await merge(gitea, team.repo, pr["number"], team.writer, Do="manually-merged", MergeCommitID=head)
    assert (status, body["message"]) == (
        405,
        "manually-merged is not allowed an allowed merge style for this repository",
    )
    await gitea.api("PATCH", f"/repos/{team.repo}", json={"allow_manual_merge": True})
    status, body = await merge(gitea, team.repo, pr["number"], team.writer, Do="manually-merged", MergeCommitID=head)
    assert (status, body["message"]) == (409, "Wrong commit ID")  # not on main yet
    await gitea.push(team.repo, team.writer, f"{head}:refs/heads/main")
    await gitea.wait_idle()
    got = await gitea.get_pr(team.repo, pr["number"])
    assert got["merged"] is False  # autodetect_manual_merge is off by default
    status, _ = await merge(gitea, team.repo, pr["number"], team.writer, do="manually-merged", merge_commit_id=head)
    assert status == 200
    got = await gitea.get_pr(team.repo, pr["number"])
    assert got["merged"] and got["merge_commit_sha"] == head


async def test_merge_commit_with_custom_title_and_branch_deletion(gitea: SimHandle, team: Team) -> None:
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    status, _ = await merge(
        gitea,
        team.repo,
        pr["number"],
        team.writer,
        Do="merge",
        MergeTitleField="Title",
        MergeMessageField="Body",
        delete_branch_after_merge=True,
    )
    assert status == 200
    git = bare(gitea, team.repo)
    info = await git.commit("main")
    assert info is not None and info.message == "Title\n\nBody\n"
    assert await git.branch_sha("feat") is None


async def test_open_dependency_blocks_merge(gitea: SimHandle, team: Team) -> None:
    first = await open_pr(gitea, team, "first", {"a.txt": "1\n"})
    second = await open_pr(gitea, team, "second", {"b.txt": "1\n"})
    await gitea.api(
        "POST",
        f"/repos/{team.repo}/issues/{second['number']}/dependencies",
        json={"owner": "alice", "repo": "demo", "index": first["number"]},
    )
    deps = await gitea.api("GET", f"/repos/{team.repo}/issues/{second['number']}/dependencies")
    assert [d["number"] for d in deps] == [first["number"]]
    status, _ = await merge(gitea, team.repo, second["number"], team.writer, Do="merge")
    assert status == 500  # Gitea's API does not map ErrDependenciesLeft
    assert (await merge(gitea, team.repo, first["number"], team.writer, Do="merge"))[0] == 200
    await gitea.wait_idle()
    assert (await merge(gitea, team.repo, second["number"], team.writer, Do="merge"))[0] == 200


# --- update (merge base into head) ---
async def test_update_by_merge_and_by_rebase(gitea: SimHandle, team: Team) -> None:
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    base = await move_main(gitea, team, {"m.txt": "1\n"})
    git = bare(gitea, team.repo)
    status, _, _ = await gitea.request(
        "POST", f"/api/v1/repos/{team.repo}/pulls/1/update?style=merge", token=team.writer.token
    )
    assert status == 200
    head = await git.branch_sha("feat")
    assert head is not None
    info = await git.commit(head)
    assert info is not None and info.parents == [pr["head"]["sha"], base]
    assert info.message.startswith("Merge branch 'main' into feat")
    base2 = await move_main(gitea, team, {"m.txt": "2\n"})
    status, _, _ = await gitea.request(
        "POST", f"/api/v1/repos/{team.repo}/pulls/1/update?style=rebase", token=team.writer.token
    )
    assert status == 200
    head2 = await git.branch_sha("feat")
    assert head2 is not None
    assert await git.is_ancestor(base2, head2)
    assert (await gitea.get_pr(team.repo, 1))["head"]["sha"] == head2


async def test_update_edge_cases(gitea: SimHandle, team: Team) -> None:
    pr = await open_pr(gitea, team, "feat", {"README.md": "feature\n"})
    await move_main(gitea, team, {"README.md": "main\n"})
    url = f"/api/v1/repos/{team.repo}/pulls/{pr['number']}/update"
    status, body, _ = await gitea.request("POST", url, token=team.writer.token)
    assert (status, body["message"]) == (409, "merge failed because of conflict")
    status, body, _ = await gitea.request("POST", url + "?style=rebase", token=team.writer.token)
    assert (status, body["message"]) == (409, "rebase failed because of conflict")
    status, _, _ = await gitea.request("POST", url, token=team.reader.token)
    assert status == 403
    await gitea.api("PATCH", f"/repos/{team.repo}", json={"allow_rebase_update": False})
    status, _, _ = await gitea.request("POST", url + "?style=rebase", token=team.writer.token)
    assert status == 403
    await gitea.api("PATCH", f"/repos/{team.repo}/pulls/{pr['number']}", json={"state": "closed"})
    status, _, _ = await gitea.request("POST", url, token=team.writer.token)
    assert status == 422


# --- scheduled merge ("merge when checks succeed") ---
async def test_scheduled_merge_waits_for_required_contexts(gitea: SimHandle, team: Team) -> None:
    await gitea.protect(team.repo, "main", enable_status_check=True, status_check_contexts=["ci/test"])
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    status, _ = await merge(gitea, team.repo, pr["number"], team.writer, Do="merge", merge_when_checks_succeed=True)
    assert status == 201
    status, _body = await merge(gitea, team.repo, pr["number"], team.writer, Do="merge", merge_when_checks_succeed=True)
    assert status == 409
    timeline = await gitea.api("GET", f"/repos/{team.repo}/issues/{pr['number']}/timeline")
    assert "pull_scheduled_merge" in [t["type"] for t in timeline]
    await gitea.set_status(team.repo, pr["head"]["sha"], "pending", "ci/test")
    await gitea.wait_idle()
    assert (await gitea.get_pr(team.repo, pr["number"]))["merged"] is False
    await gitea.set_status(team.repo, pr["head"]["sha"], "success", "ci/test")
    await gitea.wait_idle()
    got = await gitea.get_pr(team.repo, pr["number"])
    assert got["merged"] is True and got["merged_by"]["login"] == "bob"


async def test_scheduled_merge_on_green_checks_is_scheduled_then_merged(gitea: SimHandle, team: Team) -> None:
    """Gitea >= 1.22 schedules even when the checks are already green (201); its auto-merge queue merges after."""
    await gitea.protect(team.repo, "main", enable_status_check=True, status_check_contexts=["ci/test"])
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    await gitea.set_status(team.repo, pr["head"]["sha"], "success", "ci/test")
    status, _ = await merge(gitea, team.repo, pr["number"], team.writer, Do="merge", merge_when_checks_succeed=True)
    assert status == 201
    await gitea.wait_idle()
    got = await gitea.get_pr(team.repo, pr["number"])
    assert got["merged"] is True and got["merged_by"]["login"] == "bob"
    types = [t["type"] for t in await gitea.api("GET", f"/repos/{team.repo}/issues/{pr['number']}/timeline")]
    assert types.index("pull_scheduled_merge") < types.index("merge_pull")


async def test_scheduled_merge_without_status_checks_merges_from_the_queue(gitea: SimHandle, team: Team) -> None:
    """IsPullCommitStatusPass: with no rule (or status checks off) the scheduled merge needs no status at all."""
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    status, _ = await merge(gitea, team.repo, pr["number"], team.writer, Do="squash", merge_when_checks_succeed=True)
    assert status == 201
    await gitea.wait_idle()
    assert (await gitea.get_pr(team.repo, pr["number"]))["merged"] is True


async def test_cancel_scheduled_merge(gitea: SimHandle, team: Team) -> None:
    await gitea.protect(team.repo, "main", enable_status_check=True, status_check_contexts=["ci/test"])
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    url = f"/api/v1/repos/{team.repo}/pulls/{pr['number']}/merge"
    assert (await gitea.request("DELETE", url, token=team.writer.token))[0] == 404
    status, _ = await merge(gitea, team.repo, pr["number"], team.writer, Do="squash", merge_when_checks_succeed=True)
    assert status == 201
    assert (await gitea.request("DELETE", url, token=team.reader.token))[0] == 403
    assert (await gitea.request("DELETE", url, token=team.writer.token))[0] == 204
    timeline = await gitea.api("GET", f"/repos/{team.repo}/issues/{pr['number']}/timeline")
    types = [t["type"] for t in timeline]
    assert types.index("pull_scheduled_merge") < types.index("pull_cancel_scheduled_merge")
    await gitea.set_status(team.repo, pr["head"]["sha"], "success", "ci/test")
    await gitea.wait_idle()
    assert (await gitea.get_pr(team.repo, pr["number"]))["merged"] is False


async def test_scheduled_merge_lands_untested_combination(gitea: SimHandle, team: Team) -> None:
    """As in Gitea (go-gitea/gitea#39214): the scheduled merge does not re-test the PR on top of the new base."""
    await gitea.set_ci(team.repo, "sh ci.sh")
    await gitea.push_commit(team.repo, team.owner, "main", {"ci.sh": "test -f base.txt\n", "base.txt": "1\n"})
    await gitea.protect(
        team.repo, "main", enable_push=True, enable_status_check=True, status_check_contexts=["ci/test"]
    )
    await gitea.wait_idle()
    a = await open_pr(gitea, team, "a", {"base.txt": None, "a.txt": "1\n", "ci.sh": "true\n"})
    b = await open_pr(gitea, team, "b", {"b.txt": "1\n"})
    assert (await merge(gitea, team.repo, b["number"], team.writer, Do="merge", merge_when_checks_succeed=True))[
        0
    ] == 201
    await gitea.wait_idle()
    assert (await merge(gitea, team.repo, a["number"], team.writer, Do="merge"))[0] == 200
    assert (await gitea.get_pr(team.repo, b["number"]))["merged"]
