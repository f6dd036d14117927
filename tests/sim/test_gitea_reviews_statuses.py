"""Reviews, commit statuses and hooks held to Gitea's integration tests (tests/integration/api_pull_review_test.go,
repo_commits_test.go, api_repo_hook_test.go) and handlers. Each test names the Gitea test it follows."""

from __future__ import annotations

import pytest

from gitea_sim.testing import SimHandle

from .conftest import Team
from .test_merge import open_pr


# --- reviews (api_pull_review_test.go) ---
async def test_review_comment_needs_a_body_or_comments(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_pull_review_test.go TestAPIPullReview: a COMMENT review with a body is
    200 (state COMMENT); with neither body nor comments it is 422 'review event COMMENT requires a body or a
    comment'."""
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    url = f"/api/v1/repos/{team.repo}/pulls/{pr['number']}/reviews"
    status, review, _ = await gitea.request("POST", url, token=team.owner.token,
                                            json={"event": "COMMENT", "body": "This is a body of the comment."})
    assert (status, review["state"], review["body"], review["dismissed"]) == (
        200, "COMMENT", "This is a body of the comment.", False)
    status, err, _ = await gitea.request("POST", url, token=team.owner.token,
                                         json={"event": "COMMENT", "body": "", "comments": []})
    assert (status, err["message"]) == (422, "review event COMMENT requires a body or a comment")
    status, err, _ = await gitea.request("POST", url, token=team.owner.token, json={"event": "COMMENT", "body": "  "})
    assert status == 422


async def test_request_changes_needs_a_body(gitea: SimHandle, team: Team) -> None:
    """Follows routers/api/v1/repo/pull_review.go preparePullReviewType: REQUEST_CHANGES without a body is
    422 'review event REQUEST_CHANGES requires a body'; an approval needs none."""
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    url = f"/api/v1/repos/{team.repo}/pulls/{pr['number']}/reviews"
    status, err, _ = await gitea.request("POST", url, token=team.owner.token, json={"event": "REQUEST_CHANGES"})
    assert (status, err["message"]) == (422, "review event REQUEST_CHANGES requires a body")
    status, review, _ = await gitea.request("POST", url, token=team.owner.token, json={"event": "APPROVED"})
    assert (status, review["state"], review["official"]) == (200, "APPROVED", True)


@pytest.mark.parametrize(("event", "message"), [("APPROVED", "approve your own pull is not allowed"),
                                                ("REQUEST_CHANGES", "reject your own pull is not allowed")])
async def test_own_pull_cannot_be_approved_or_rejected(gitea: SimHandle, team: Team, event: str,
                                                       message: str) -> None:
    """Follows routers/api/v1/repo/pull_review.go preparePullReviewType (poster checks)."""
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    status, err, _ = await gitea.request("POST", f"/api/v1/repos/{team.repo}/pulls/{pr['number']}/reviews",
                                         token=team.writer.token, json={"event": event, "body": "x"})
    assert (status, err["message"]) == (422, message)


async def test_list_reviews_marks_stale_ones(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_pull_review_test.go TestAPIPullReview (ListPullReviews): every review links
    the PR; one given before the head moved is stale; a reader's review is not official."""
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    url = f"/repos/{team.repo}/pulls/{pr['number']}/reviews"
    await gitea.api("POST", url, token=team.owner.token, json={"event": "APPROVED"})
    await gitea.push_commit(team.repo, team.writer, "feat", {"f.txt": "2\n"})
    await gitea.wait_idle()
    await gitea.api("POST", url, token=team.reader.token, json={"event": "COMMENT", "body": "looks fine"})
    reviews = await gitea.api("GET", url)
    assert [(r["state"], r["stale"], r["official"]) for r in reviews] == [("APPROVED", True, True),
                                                                          ("COMMENT", False, False)]
    assert {r["pull_request_url"] for r in reviews} == {pr["html_url"]}


# --- commit statuses (repo_commits_test.go) ---
@pytest.mark.parametrize(("state", "combined"), [("pending", "pending"), ("success", "success"),
                                                 ("error", "failure"), ("failure", "failure"),
                                                 ("warning", "success")])
async def test_combined_status_of_a_single_state(gitea: SimHandle, team: Team, state: str, combined: str) -> None:
    """Follows tests/integration/repo_commits_test.go TestRepoCommitsWithStatusPending / ...Success / ...Error /
    ...Failure / ...Warning (doTestRepoCommitWithStatus): the status is listed with its state, and the
    combined state folds error into failure and warning into success (Gitea 1.25)."""
    sha = await gitea.push_commit(team.repo, team.owner, "main", {"s.txt": state})
    created = await gitea.api("POST", f"/repos/{team.repo}/statuses/{sha}", expect=201,
                              json={"state": state, "context": "testci", "target_url": "http://test.ci/",
                                    "description": "tested"})
    assert (created["status"], created["context"], created["target_url"]) == (state, "testci", "http://test.ci/")
    listed = await gitea.api("GET", f"/repos/{team.repo}/commits/{sha}/statuses")
    assert [s["status"] for s in listed] == [state]
    summary = await gitea.api("GET", f"/repos/{team.repo}/commits/{sha}/status")
    assert (summary["state"], summary["sha"], summary["total_count"]) == (combined, sha, 1)


async def test_latest_status_per_context_wins(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/repo_commits_test.go TestRepoCommitsStatusMultiple: several contexts, the newest
    status of each counts; the list is newest first."""
    sha = await gitea.push_commit(team.repo, team.owner, "main", {"m.txt": "1\n"})
    for state, context in [("pending", "ci/a"), ("success", "ci/b"), ("success", "ci/a")]:
        await gitea.set_status(team.repo, sha, state, context)
    summary = await gitea.api("GET", f"/repos/{team.repo}/commits/{sha}/status")
    assert summary["state"] == "success"
    assert sorted((s["context"], s["status"]) for s in summary["statuses"]) == [("ci/a", "success"),
                                                                              ("ci/b", "success")]
    listed = await gitea.api("GET", f"/repos/{team.repo}/statuses/{sha}")
    assert [s["status"] for s in listed] == ["success", "success", "pending"]
    by_branch = await gitea.api("GET", f"/repos/{team.repo}/commits/main/status")
    assert by_branch["sha"] == sha


async def test_status_needs_write_access_and_a_valid_state(gitea: SimHandle, team: Team) -> None:
    """Follows routers/api/v1/repo/status.go NewCommitStatus (reqRepoWriter): a reader is 403, an unknown state
    400 (the state is checked by the handler, not by the binding)."""
    sha = await gitea.push_commit(team.repo, team.owner, "main", {"v.txt": "1\n"})
    url = f"/repos/{team.repo}/statuses/{sha}"
    await gitea.api("POST", url, token=team.reader.token, json={"state": "success"}, expect=403)
    await gitea.api("POST", url, token=team.writer.token, json={"state": "bogus"}, expect=400)


# --- hooks (api_repo_hook_test.go / routers/api/v1/repo/hook.go) ---
async def test_hook_lifecycle(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_repo_hook_test.go TestAPICreateHook and routers/api/v1/repo/hook.go: create
    (201, events and branch filter kept), a missing url or content type is 422, edit, delete (204, then 404);
    writers may not list hooks (403)."""
    url = f"/repos/{team.repo}/hooks"
    hook = await gitea.api("POST", url, expect=201, json={
        "type": "gitea", "active": True, "branch_filter": "main", "events": ["push", "pull_request"],
        "config": {"url": "http://example.invalid/hook", "content_type": "json"}})
    assert (hook["active"], hook["events"], hook["branch_filter"]) == (True, ["push", "pull_request"], "main")
    await gitea.api("POST", url, json={"type": "gitea", "config": {"content_type": "json"}}, expect=422)
    await gitea.api("POST", url, json={"type": "gitea", "config": {"url": "http://x.invalid"}}, expect=422)
    edited = await gitea.api("PATCH", f"{url}/{hook['id']}", json={"active": False, "events": ["status"]})
    assert (edited["active"], edited["events"]) == (False, ["status"])
    await gitea.api("GET", url, token=team.writer.token, expect=403)
    await gitea.api("DELETE", f"{url}/{hook['id']}", expect=204)
    await gitea.api("GET", f"{url}/{hook['id']}", expect=404)
