"""Comments, reactions, labels, dependencies and the timeline held to Gitea's integration tests
(tests/integration/api_comment_test.go, api_issue_reaction_test.go, api_issue_label_test.go) and handlers
(routers/api/v1/repo/issue_*.go). Each test names the Gitea test it follows."""

from __future__ import annotations

from gitea_sim.testing import SimHandle

from .conftest import Team
from .test_merge import open_pr


async def new_issue(g: SimHandle, team: Team, title: str = "bug") -> int:
    issue = await g.api("POST", f"/repos/{team.repo}/issues", json={"title": title}, token=team.reader.token)
    return int(issue["number"])


# --- comments (api_comment_test.go) ---
async def test_list_repo_comments(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_comment_test.go TestAPIListRepoComments: every comment of the repository,
    oldest first, X-Total-Count, a `next` link when paged."""
    one, two = await new_issue(gitea, team, "one"), await new_issue(gitea, team, "two")
    c1 = await gitea.comment(team.repo, one, team.reader, "first")
    c2 = await gitea.comment(team.repo, two, team.writer, "second")
    status, comments, headers = await gitea.request("GET", f"/api/v1/repos/{team.repo}/issues/comments")
    assert status == 200
    assert [c["id"] for c in comments] == [c1["id"], c2["id"]]
    assert headers["X-Total-Count"] == "2"
    status, page, headers = await gitea.request("GET", f"/api/v1/repos/{team.repo}/issues/comments",
                                                params={"page": "1", "limit": "1"})
    assert [c["id"] for c in page] == [c1["id"]]
    assert 'rel="next"' in headers["Link"]
    status, none, _ = await gitea.request("GET", f"/api/v1/repos/{team.repo}/issues/comments",
                                          params={"before": "2000-01-01T00:00:11+00:00"})
    assert (status, none) == (200, [])
    status, since, _ = await gitea.request("GET", f"/api/v1/repos/{team.repo}/issues/comments",
                                           params={"since": "2000-01-01T00:00:12+00:00"})
    assert len(since) == 2


async def test_list_issue_comments(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_comment_test.go TestAPIListIssueComments: one issue's comments only."""
    one, two = await new_issue(gitea, team, "one"), await new_issue(gitea, team, "two")
    await gitea.comment(team.repo, one, team.reader, "a")
    await gitea.comment(team.repo, one, team.reader, "b")
    await gitea.comment(team.repo, two, team.reader, "c")
    status, comments, headers = await gitea.request("GET", f"/api/v1/repos/{team.repo}/issues/{one}/comments",
                                                    token=team.owner.token)
    assert status == 200
    assert [c["body"] for c in comments] == ["a", "b"]
    assert headers["X-Total-Count"] == "2"


async def test_create_comment_form_encoded(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_comment_test.go TestAPICreateComment, which posts the body form-encoded
    (NewRequestWithValues): 201 with the body."""
    index = await new_issue(gitea, team)
    status, comment, _ = await gitea.request("POST", f"/api/v1/repos/{team.repo}/issues/{index}/comments",
                                             token=team.owner.token, form={"body": "Comment body"})
    assert (status, comment["body"]) == (201, "Comment body")
    status, _, _ = await gitea.request("POST", f"/api/v1/repos/{team.repo}/issues/{index}/comments",
                                       token=team.owner.token, form={"body": ""})
    assert status == 422


async def test_get_comment_anonymously(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_comment_test.go TestAPIGetComment: a public repository's comment reads
    without a token too, with its poster and body."""
    index = await new_issue(gitea, team)
    created = await gitea.comment(team.repo, index, team.writer, "hello")
    status, anon, _ = await gitea.request("GET", f"/api/v1/repos/{team.repo}/issues/comments/{created['id']}")
    assert status == 200
    assert (anon["id"], anon["body"], anon["user"]["login"]) == (created["id"], "hello", "bob")


async def test_edit_comment(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_comment_test.go TestAPIEditComment: form-encoded PATCH edits the body;
    the comment's id under another repository is 404 (UnrelatedCommentID)."""
    other = await gitea.create_repo(team.owner, "other")
    index = await new_issue(gitea, team)
    created = await gitea.comment(team.repo, index, team.writer, "old")
    status, _, _ = await gitea.request("PATCH", f"/api/v1/repos/{other}/issues/comments/{created['id']}",
                                       token=team.owner.token, form={"body": "x"})
    assert status == 404
    status, edited, _ = await gitea.request("PATCH", f"/api/v1/repos/{team.repo}/issues/comments/{created['id']}",
                                            token=team.owner.token, form={"body": "This is the new comment body"})
    assert (status, edited["id"], edited["body"]) == (200, created["id"], "This is the new comment body")


async def test_edit_someone_elses_comment_needs_write(gitea: SimHandle, team: Team) -> None:
    """Follows routers/api/v1/repo/issue_comment.go editIssueComment: not the poster and no write access -> 403."""
    index = await new_issue(gitea, team)
    created = await gitea.comment(team.repo, index, team.writer, "mine")
    status, _, _ = await gitea.request("PATCH", f"/api/v1/repos/{team.repo}/issues/comments/{created['id']}",
                                       token=team.reader.token, json={"body": "yours"})
    assert status == 403


async def test_delete_comment(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_comment_test.go TestAPIDeleteComment: another repository's path is 404;
    then 204 and the comment is gone."""
    other = await gitea.create_repo(team.owner, "other")
    index = await new_issue(gitea, team)
    created = await gitea.comment(team.repo, index, team.writer, "bye")
    await gitea.api("DELETE", f"/repos/{other}/issues/comments/{created['id']}", expect=404)
    await gitea.api("DELETE", f"/repos/{team.repo}/issues/comments/{created['id']}", expect=204)
    await gitea.api("GET", f"/repos/{team.repo}/issues/comments/{created['id']}", expect=404)


async def test_issue_timeline_lists_comments_and_events(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_comment_test.go TestAPIListIssueTimeline: every comment-table row of the
    issue (comments, label and close events) in order."""
    label = await gitea.create_label(team.repo, "bug")
    index = await new_issue(gitea, team)
    await gitea.comment(team.repo, index, team.writer, "seen")
    await gitea.api("POST", f"/repos/{team.repo}/issues/{index}/labels", json={"labels": [label["id"]]})
    await gitea.api("PATCH", f"/repos/{team.repo}/issues/{index}", json={"state": "closed"})
    timeline = await gitea.api("GET", f"/repos/{team.repo}/issues/{index}/timeline")
    assert [t["type"] for t in timeline] == ["comment", "label", "close"]


# --- reactions (api_issue_reaction_test.go) ---
async def test_issue_reactions(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_issue_reaction_test.go TestAPIIssuesReactions: a reaction outside the
    allowed set is 403; deleting one that is not there is 200; a new one 201; the same again 200 (Gitea's test
    re-sends a consumed request, whose empty reaction is the 403 it sees)."""
    index = await new_issue(gitea, team)
    url = f"/api/v1/repos/{team.repo}/issues/{index}/reactions"
    assert (await gitea.request("POST", url, token=team.owner.token, json={"content": "wrong"}))[0] == 403
    assert (await gitea.request("DELETE", url, token=team.owner.token, json={"content": "zzz"}))[0] == 200
    status, created, _ = await gitea.request("POST", url, token=team.owner.token, json={"content": "rocket"})
    assert (status, created["content"], created["user"]["login"]) == (201, "rocket", "alice")
    assert (await gitea.request("POST", url, token=team.owner.token, json={"content": "rocket"}))[0] == 200
    assert (await gitea.request("POST", url, token=team.owner.token))[0] == 403
    await gitea.request("POST", url, token=team.writer.token, json={"content": "eyes"})
    status, listed, _ = await gitea.request("GET", url, token=team.owner.token)
    assert [(r["content"], r["user"]["login"]) for r in listed] == [("rocket", "alice"), ("eyes", "bob")]


async def test_comment_reactions(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_issue_reaction_test.go TestAPICommentReactions: the same rules on a comment;
    the comment under another repository's path is 404 for POST, DELETE and GET (UnrelatedCommentID)."""
    other = await gitea.create_repo(team.owner, "other")
    index = await new_issue(gitea, team)
    comment = await gitea.comment(team.repo, index, team.writer, "react to me")
    url = f"/api/v1/repos/{team.repo}/issues/comments/{comment['id']}/reactions"
    assert (await gitea.request("POST", url, token=team.owner.token, json={"content": "wrong"}))[0] == 403
    assert (await gitea.request("DELETE", url, token=team.owner.token, json={"content": "eyes"}))[0] == 200
    wrong = f"/api/v1/repos/{other}/issues/comments/{comment['id']}/reactions"
    for method in ("POST", "DELETE", "GET"):
        assert (await gitea.request(method, wrong, token=team.owner.token, json={"content": "+1"}))[0] == 404
    assert (await gitea.request("POST", url, token=team.owner.token, json={"content": "+1"}))[0] == 201
    status, listed, _ = await gitea.request("GET", url, token=team.owner.token)
    assert (status, [r["content"] for r in listed]) == (200, ["+1"])


# --- labels (api_issue_label_test.go) ---
async def test_modify_labels(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_issue_label_test.go TestAPIModifyLabels: colours with or without '#', a bad
    colour is 422 on create and edit; list, get, edit, delete (204)."""
    url = f"/repos/{team.repo}/labels"
    one = await gitea.api("POST", url, json={"name": "TestL 1", "color": "abcdef", "description": "test label"},
                          expect=201)
    assert one["color"] == "abcdef"
    await gitea.api("POST", url, json={"name": "TestL 2", "color": "#123456"}, expect=201)
    await gitea.api("POST", url, json={"name": "WrongTestL", "color": "#12345g"}, expect=422)
    assert len(await gitea.api("GET", url)) == 2
    assert (await gitea.api("GET", f"{url}/{one['id']}"))["color"] == "abcdef"
    edited = await gitea.api("PATCH", f"{url}/{one['id']}", json={"name": "LabelNewName", "color": "09876a"})
    assert (edited["name"], edited["color"]) == ("LabelNewName", "09876a")
    await gitea.api("PATCH", f"{url}/{one['id']}", json={"color": "09g76a"}, expect=422)
    await gitea.api("DELETE", f"{url}/{one['id']}", expect=204)


async def test_add_issue_labels(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_issue_label_test.go TestAPIAddIssueLabels: POST adds to the set and answers
    the issue's labels."""
    a, b = await gitea.create_label(team.repo, "a"), await gitea.create_label(team.repo, "b")
    index = await new_issue(gitea, team)
    url = f"/repos/{team.repo}/issues/{index}/labels"
    await gitea.api("POST", url, json={"labels": [a["id"]]})
    labels = await gitea.api("POST", url, json={"labels": [a["id"], b["id"]]})
    assert sorted(lab["name"] for lab in labels) == ["a", "b"]


async def test_add_issue_labels_by_name(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_issue_label_test.go TestAPIAddIssueLabelsWithLabelNames (Gitea >= 1.23):
    labels given by name."""
    await gitea.create_label(team.repo, "kind/bug")
    pr = await open_pr(gitea, team, "feat", {"f.txt": "1\n"})
    labels = await gitea.api("POST", f"/repos/{team.repo}/issues/{pr['number']}/labels",
                             json={"labels": ["kind/bug"]}, token=team.writer.token)
    assert [lab["name"] for lab in labels] == ["kind/bug"]


async def test_replace_and_remove_issue_labels(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_issue_label_test.go TestAPIReplaceIssueLabels (PUT replaces the set) and
    routers/api/v1/repo/issue_label.go DeleteIssueLabel / ClearIssueLabels (204; an unknown label id 422)."""
    a, b = await gitea.create_label(team.repo, "a"), await gitea.create_label(team.repo, "b")
    index = await new_issue(gitea, team)
    url = f"/repos/{team.repo}/issues/{index}/labels"
    await gitea.api("POST", url, json={"labels": [a["id"]]})
    replaced = await gitea.api("PUT", url, json={"labels": [b["id"]]})
    assert [lab["id"] for lab in replaced] == [b["id"]]
    await gitea.api("DELETE", f"{url}/{b['id']}", expect=204)
    assert await gitea.api("GET", url) == []
    await gitea.api("DELETE", f"{url}/99999", expect=422)
    await gitea.api("POST", url, json={"labels": [a["id"], b["id"]]})
    await gitea.api("DELETE", url, expect=204)
    assert await gitea.api("GET", url) == []


async def test_issue_labels_need_write_access(gitea: SimHandle, team: Team) -> None:
    """Follows routers/api/v1/repo/issue_label.go AddIssueLabels (write access on issues): a reader is 403."""
    a = await gitea.create_label(team.repo, "a")
    index = await new_issue(gitea, team)
    await gitea.api("POST", f"/repos/{team.repo}/issues/{index}/labels", json={"labels": [a["id"]]},
                    token=team.reader.token, expect=403)


# --- dependencies (routers/api/v1/repo/issue_dependency.go) ---
async def test_dependencies_add_list_remove(gitea: SimHandle, team: Team) -> None:
    """Follows routers/api/v1/repo/issue_dependency.go CreateIssueDependency / RemoveIssueDependency (exercised by
    tests/integration/api_issue_test.go): both answer 201 with the blocking issue (the spec says 200 for the
    removal); the list shows what blocks the issue; an unknown index is 404; form bodies work too."""
    blocker, blocked = await new_issue(gitea, team, "blocker"), await new_issue(gitea, team, "blocked")
    url = f"/api/v1/repos/{team.repo}/issues/{blocked}/dependencies"
    dep = {"owner": "alice", "repo": "demo", "index": blocker}
    status, body, _ = await gitea.request("POST", url, token=team.writer.token, json=dep)
    assert (status, body["number"]) == (201, blocker)
    listed = await gitea.api("GET", f"/repos/{team.repo}/issues/{blocked}/dependencies")
    assert [d["number"] for d in listed] == [blocker]
    status, body, _ = await gitea.request("DELETE", url, token=team.writer.token,
                                          form={"owner": "alice", "repo": "demo", "index": str(blocker)})
    assert (status, body["number"]) == (201, blocker)
    assert await gitea.api("GET", f"/repos/{team.repo}/issues/{blocked}/dependencies") == []
    status, _, _ = await gitea.request("POST", url, token=team.writer.token, json={**dep, "index": 999})
    assert status == 404
    types = [t["type"] for t in await gitea.api("GET", f"/repos/{team.repo}/issues/{blocked}/timeline")]
    assert types == ["add_dependency", "remove_dependency"]
