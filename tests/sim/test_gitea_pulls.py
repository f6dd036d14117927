"""Pull request endpoints held to Gitea's own integration tests (tests/integration/api_pull_test.go) and to the
handlers they exercise (routers/api/v1/repo/pull.go). Each test names the Gitea test it follows."""

from __future__ import annotations

from gitea_sim.testing import SimHandle

from .conftest import Team
from .test_merge import bare, merge, open_pr


async def test_list_pulls_with_state_all(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_pull_test.go TestAPIViewPulls: state=all lists every PR, newest first,
    with the poster, and X-Total-Count counts them."""
    first = await open_pr(gitea, team, "one", {"one.txt": "1\n"})
    second = await open_pr(gitea, team, "two", {"two.txt": "2\n"})
    await gitea.api("PATCH", f"/repos/{team.repo}/pulls/{first['number']}", json={"state": "closed"})
    status, pulls, headers = await gitea.request(
        "GET", f"/api/v1/repos/{team.repo}/pulls", token=team.reader.token, params={"state": "all"}
    )
    assert status == 200
    assert [p["number"] for p in pulls] == [second["number"], first["number"]]
    assert headers["X-Total-Count"] == "2"
    assert {p["user"]["login"] for p in pulls} == {"bob"}
    open_only = await gitea.api("GET", f"/repos/{team.repo}/pulls", token=team.reader.token)
    assert [p["number"] for p in open_only] == [second["number"]]


async def test_get_pull_by_base_and_head(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_pull_test.go TestAPIViewPullsByBaseHead: pulls/{base}/{head} finds the PR;
    an unknown head is 404."""
    pr = await open_pr(gitea, team, "feature/x", {"x.txt": "1\n"})
    got = await gitea.api("GET", f"/repos/{team.repo}/pulls/main/feature/x", token=team.reader.token)
    assert (got["number"], got["id"]) == (pr["number"], pr["id"])
    await gitea.api("GET", f"/repos/{team.repo}/pulls/main/branch-not-exist", expect=404)


async def test_merge_wip_pull_is_refused(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_pull_test.go TestAPIMergePullWIP: a PR retitled with a WIP prefix answers
    405 to a merge."""
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    edited = await gitea.api(
        "PATCH", f"/repos/{team.repo}/pulls/{pr['number']}", json={"title": "WIP: " + pr["title"]}
    )
    assert edited["draft"] is True
    status, body = await merge(gitea, team.repo, pr["number"], team.owner, Do="merge", MergeMessageField="x")
    assert (status, body["message"]) == (405, "Work in progress PRs cannot be merged")


async def test_merge_keeps_the_branch_and_a_second_merge_is_refused(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_pull_test.go TestAPIMergePull/Normal: merging keeps the head branch; the
    same PR cannot be merged again. (Gitea's test re-sends a consumed request, whose empty body fails binding
    with 422; with the body, MergePullRequest answers ErrHasMerged as 405.)"""
    pr = await open_pr(gitea, team, "test-pull-1", {"f.txt": "1\n"})
    assert (await merge(gitea, team.repo, pr["number"], team.owner, Do="merge"))[0] == 200
    await gitea.api("GET", f"/repos/{team.repo}/branches/test-pull-1")
    assert (await merge(gitea, team.repo, pr["number"], team.owner, Do="merge"))[0] == 405
    status, _, _ = await gitea.request(
        "POST", f"/api/v1/repos/{team.repo}/pulls/{pr['number']}/merge", token=team.owner.token
    )
    assert status == 422
    await gitea.api("GET", f"/repos/{team.repo}/branches/test-pull-1")


async def test_merge_with_delete_branch_after_merge(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_pull_test.go TestAPIMergePull/DeleteBranchAfterMergePassedByFormField."""
    pr = await open_pr(gitea, team, "test-pull-2", {"f.txt": "1\n"})
    status, _ = await merge(gitea, team.repo, pr["number"], team.owner, Do="merge", delete_branch_after_merge=True)
    assert status == 200
    await gitea.api("GET", f"/repos/{team.repo}/branches/test-pull-2", expect=404)


async def test_merge_form_encoded(gitea: SimHandle, team: Team) -> None:
    """Follows routers/api/v1/repo/pull.go MergePullRequest as Gitea's web form posts it (form-encoded, snake
    case fields, checkbox values): Gitea's binding reads form bodies as well as JSON."""
    pr = await open_pr(gitea, team, "formed", {"f.txt": "1\n"})
    status, _, _ = await gitea.request(
        "POST",
        f"/api/v1/repos/{team.repo}/pulls/{pr['number']}/merge",
        token=team.owner.token,
        form={"do": "squash", "merge_title_field": "Squashed", "delete_branch_after_merge": "on"},
    )
    assert status == 200
    git = bare(gitea, team.repo)
    info = await git.commit("main")
    assert info is not None and info.message.startswith("Squashed\n")
    assert await git.branch_sha("formed") is None


async def test_create_pull_twice_conflicts(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_pull_test.go TestAPICreatePullSameRepoSuccess: a second PR for the same
    head and base is refused. CreatePullRequest answers ErrPullRequestAlreadyExists with 409; Gitea's test
    re-sends a consumed request, so its empty body fails binding with 422, which the simulator gives too."""
    await gitea.push_commit(team.repo, team.owner, "pr-to-update", {"u.txt": "1\n"}, base="main")
    body = {"head": "alice:pr-to-update", "base": "main", "title": "same repository"}
    await gitea.api("POST", f"/repos/{team.repo}/pulls", json=body, token=team.owner.token, expect=201)
    status, err, _ = await gitea.request("POST", f"/api/v1/repos/{team.repo}/pulls", json=body,
                                         token=team.owner.token)
    assert status == 409 and "pull request already exists" in err["message"]
    status, _, _ = await gitea.request("POST", f"/api/v1/repos/{team.repo}/pulls", token=team.owner.token)
    assert status == 422


async def test_create_pull_with_fields_and_failures(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_pull_test.go TestAPICreatePullWithFieldsSuccess and
    TestAPICreatePullWithFieldsFailure: title, body and labels are kept; a missing title is 422, an unknown
    base or head 404, head equal to base 422."""
    label = await gitea.create_label(team.repo, "kind/feature")
    await gitea.push_commit(team.repo, team.owner, "fields", {"f.txt": "1\n"}, base="main")
    url = f"/repos/{team.repo}/pulls"
    pr = await gitea.api(
        "POST", url, token=team.owner.token,
        json={"head": "fields", "base": "main", "title": "with fields", "body": "described", "labels": [label["id"]]},
    )
    assert (pr["title"], pr["body"]) == ("with fields", "described")
    assert [lab["name"] for lab in pr["labels"]] == ["kind/feature"]
    await gitea.api("POST", url, token=team.owner.token, json={"head": "fields", "base": "main"}, expect=422)
    await gitea.api("POST", url, token=team.owner.token, json={"head": "fields", "base": "nope", "title": "t"},
                    expect=404)
    await gitea.api("POST", url, token=team.owner.token, json={"head": "nope", "base": "main", "title": "t"},
                    expect=404)
    await gitea.api("POST", url, token=team.owner.token, json={"head": "main", "base": "main", "title": "t"},
                    expect=422)


async def test_edit_pull_title_body_and_base(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_pull_test.go TestAPIEditPull: title and body change (201 with the PR),
    the base moves to an existing branch and a missing base is 404 ("new base '...' not exist")."""
    await gitea.api("POST", f"/repos/{team.repo}/branches", json={"new_branch_name": "develop"})
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    url = f"/repos/{team.repo}/pulls/{pr['number']}"
    edited = await gitea.api("PATCH", url, json={"title": "new title", "body": "new body", "base": "develop"},
                             token=team.writer.token, expect=201)
    assert (edited["title"], edited["body"], edited["base"]["ref"]) == ("new title", "new body", "develop")
    status, body, _ = await gitea.request("PATCH", "/api/v1" + url, json={"base": "not-exist"},
                                          token=team.writer.token)
    assert (status, body["errors"]) == (404, ["new base 'not-exist' not exist"])
    timeline = await gitea.api("GET", f"/repos/{team.repo}/issues/{pr['number']}/timeline")
    change = [t for t in timeline if t["type"] == "change_target_branch"]
    assert [(t["old_ref"], t["new_ref"]) for t in change] == [("main", "develop")]


async def test_edit_pull_by_reader_is_forbidden(gitea: SimHandle, team: Team) -> None:
    """Follows routers/api/v1/repo/pull.go EditPullRequest (as TestAPIEditPull's permission case): neither the
    poster nor a writer -> 403."""
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    status, _, _ = await gitea.request("PATCH", f"/api/v1/repos/{team.repo}/pulls/{pr['number']}",
                                       json={"title": "hijacked"}, token=team.reader.token)
    assert status == 403


async def test_state_of_a_merged_pull_cannot_change(gitea: SimHandle, team: Team) -> None:
    """Follows routers/api/v1/repo/pull.go EditPullRequest: reopening or closing a merged PR is 412."""
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    assert (await merge(gitea, team.repo, pr["number"], team.owner, Do="merge"))[0] == 200
    status, body, _ = await gitea.request("PATCH", f"/api/v1/repos/{team.repo}/pulls/{pr['number']}",
                                          json={"state": "open"}, token=team.owner.token)
    assert (status, body["message"]) == (412, "cannot change state of this pull request, it was already merged")


async def test_pull_commits_and_is_merged(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_pull_commits_test.go TestAPIPullCommits and routers/api/v1/repo/pull.go
    IsPullRequestMerged: the PR's commits with their SHAs; GET .../merge is 404 until merged, then 204."""
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    second = await gitea.push_commit(team.repo, team.writer, "feat", {"g.txt": "2\n"}, message="second")
    await gitea.wait_idle()
    commits = await gitea.api("GET", f"/repos/{team.repo}/pulls/{pr['number']}/commits")
    assert [c["sha"] for c in commits] == [second, pr["head"]["sha"]]
    merged_url = f"/repos/{team.repo}/pulls/{pr['number']}/merge"
    await gitea.api("GET", merged_url, expect=404)
    assert (await merge(gitea, team.repo, pr["number"], team.owner, Do="rebase"))[0] == 200
    await gitea.api("GET", merged_url, expect=204)
