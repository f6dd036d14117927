"""Repository topics, the repository search and the per-owner repository lists, held to Gitea 1.25:
routers/api/v1/repo/topic.go with models/repo/topic.go (ValidateTopic, SanitizeAndValidateTopics),
routers/api/v1/repo/repo.go Search with models/repo/repo_list.go (SearchRepositoryCondition), and
routers/api/v1/user/repo.go (listUserRepos). Each test names the Gitea source or test it follows."""

from __future__ import annotations

import pytest

from gitea_sim.testing import SimHandle

from .conftest import Team

API = "/api/v1"


async def topics_of(gitea: SimHandle, repo: str, token: str) -> list[str]:
    data = await gitea.api("GET", f"/repos/{repo}/topics", token=token)
    return list(data["topics"])


async def test_repo_topic_lifecycle(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_repo_topic_test.go TestAPIRepoTopic: add (names lower-cased), delete
    case-insensitively, replace (trimmed, blanks dropped), an invalid name in a replacement changes nothing,
    repeats count once, 25 at most, deleting a topic the repository lacks is 404."""
    repo, token = team.repo, team.owner.token
    await gitea.api("PUT", f"/repos/{repo}/topics", token=token, json={"topics": ["topicname1", "topicname2"]})
    await gitea.api("DELETE", f"/repos/{repo}/topics/Topicname1", token=token, expect=204)
    await gitea.api("PUT", f"/repos/{repo}/topics/Golang", token=token, expect=204)
    await gitea.api("PUT", f"/repos/{repo}/topics/topicName3", token=token, expect=204)
    assert sorted(await topics_of(gitea, repo, token)) == ["golang", "topicname2", "topicname3"]

    await gitea.api("PUT", f"/repos/{repo}/topics", token=token, json={"topics": ["   windows ", "   ", "MAC  "]})
    assert sorted(await topics_of(gitea, repo, token)) == ["mac", "windows"]

    status, body, _ = await gitea.request("PUT", f"{API}/repos/{repo}/topics", token=token,
                                          json={"topics": ["topicname1", "topicname2", "topicname!"]})
    assert (status, body) == (422, {"invalidTopics": ["topicname!"], "message": "Topic names are invalid"})
    assert sorted(await topics_of(gitea, repo, token)) == ["mac", "windows"]

    many = ["t1", "t2", "t1", *(f"t{i}" for i in range(3, 17)), "17", *(f"t{i}" for i in range(18, 26))]
    await gitea.api("PUT", f"/repos/{repo}/topics", token=token, json={"topics": many}, expect=204)
    assert len(await topics_of(gitea, repo, token)) == 25
    status, body, _ = await gitea.request("PUT", f"{API}/repos/{repo}/topics", token=token,
                                          json={"topics": [*many, "t26"]})
    assert (status, body["message"]) == (422, "Exceeding maximum number of topics per repo")
    status, body, _ = await gitea.request("PUT", f"{API}/repos/{repo}/topics/t26", token=token)
    assert (status, body) == (422, {"message": "Exceeding maximum allowed topics per repo."})
    await gitea.api("DELETE", f"/repos/{repo}/topics/Topicname1", token=token, expect=404)


@pytest.mark.parametrize(("name", "valid"), [
    ("a", True), ("go-lang", True), ("v1.2", True), ("0day", True), ("x" * 35, True),
    ("x" * 36, False), ("-dash", False), (".dot", False), ("under_score", False), ("spa ce", False),
    ("umläut", False),
])
async def test_topic_names_are_validated_as_gitea_does(gitea: SimHandle, team: Team, name: str, valid: bool) -> None:
    """Follows models/repo/topic.go ValidateTopic: `^[a-z0-9][-.a-z0-9]*$` and at most 35 characters, after
    the name is lower-cased and trimmed (so `Go` is `go`); an invalid one answers 422 naming it."""
    status, body, _ = await gitea.request("PUT", f"{API}/repos/{team.repo}/topics/{name}", token=team.owner.token)
    if valid:
        assert status == 204
        assert name in await topics_of(gitea, team.repo, team.owner.token)
    else:
        assert (status, body) == (422, {"invalidTopics": name, "message": "Topic name is invalid"})


async def test_topics_need_repo_admin_to_change(gitea: SimHandle, team: Team) -> None:
    """Follows TestAPIRepoTopic (a writer adding a topic gets 403) and api.go (reqToken before reqAdmin on the
    topic routes; reading needs only read access)."""
    await gitea.api("PUT", f"/repos/{team.repo}/topics/ok", token=team.owner.token)
    status, _, _ = await gitea.request("PUT", f"{API}/repos/{team.repo}/topics/nope", token=team.writer.token)
    assert status == 403
    status, _, _ = await gitea.request("PUT", f"{API}/repos/{team.repo}/topics", json={"topics": ["x"]})
    assert status == 401
    assert await topics_of(gitea, team.repo, team.reader.token) == ["ok"]


async def test_topics_are_listed_by_name_and_shown_on_the_repository_by_use(gitea: SimHandle, team: Team) -> None:
    """Follows models/repo/topic.go: FindTopics for one repository orders by name and sets X-Total-Count;
    the repository's `topics` field is synced ordered by how many repositories use each topic."""
    other = await gitea.create_repo(team.owner, "other")
    await gitea.api("PUT", f"/repos/{other}/topics", json={"topics": ["zeta"]})
    await gitea.api("PUT", f"/repos/{team.repo}/topics", json={"topics": ["alpha", "zeta"]})
    status, body, headers = await gitea.request("GET", f"{API}/repos/{team.repo}/topics", token=team.owner.token)
    assert (status, body["topics"], headers["X-Total-Count"]) == (200, ["alpha", "zeta"], "2")
    repo = await gitea.api("GET", f"/repos/{team.repo}")
    assert repo["topics"] == ["zeta", "alpha"]


async def search(gitea: SimHandle, token: str | None = None, **params: str) -> tuple[list[str], dict[str, str]]:
    status, body, headers = await gitea.request("GET", f"{API}/repos/search", token=token, params=params)
    assert status == 200, body
    assert body["ok"] is True
    return [str(r["full_name"]) for r in body["data"]], headers


async def test_search_by_topic_matches_the_topic_exactly(gitea: SimHandle, team: Team) -> None:
    """Follows SearchRepositoryCondition: with topic=true each comma-separated keyword must equal a topic
    (lower-cased); without it a keyword matches part of a topic or of the repository name."""
    queued = await gitea.create_repo(team.owner, "queued")
    near = await gitea.create_repo(team.owner, "nearly")
    await gitea.api("PUT", f"/repos/{queued}/topics", json={"topics": ["merge-queue"]})
    await gitea.api("PUT", f"/repos/{near}/topics", json={"topics": ["merge-queue-old"]})
    assert (await search(gitea, q="Merge-Queue", topic="true"))[0] == [queued]
    assert sorted((await search(gitea, q="merge-queue"))[0]) == sorted([queued, near])
    assert (await search(gitea, q="merge-queue,merge-queue-old", topic="1"))[0] == [near, queued]
    assert (await search(gitea, q="queued", topic="true"))[0] == []
    assert (await search(gitea, q="queued"))[0] == [queued]


async def test_search_lists_an_owners_repositories_page_by_page(gitea: SimHandle, team: Team) -> None:
    """Follows Search (uid, exclusive; SetLinkHeader, SetTotalCountHeader): alphabetical by default; `uid`
    keeps what that user owns or collaborates on, `exclusive` only what it owns; paged with X-Total-Count
    and a Link header."""
    names = ["b-two", "a-one", "c-three"]
    for name in names:
        await gitea.create_repo(team.writer, name)
    uid = str((await gitea.api("GET", "/users/bob"))["id"])
    found, _ = await search(gitea, uid=uid)
    assert found == ["bob/a-one", "bob/b-two", "bob/c-three", team.repo]  # bob writes to alice/demo
    mine, _ = await search(gitea, uid=uid, exclusive="true")
    assert mine == ["bob/a-one", "bob/b-two", "bob/c-three"]
    page, headers = await search(gitea, uid=uid, exclusive="true", limit="2", page="2")
    assert (page, headers["X-Total-Count"]) == (["bob/c-three"], "3")
    assert 'rel="first"' in headers["Link"] and 'rel="prev"' in headers["Link"]
    first, headers = await search(gitea, uid=uid, exclusive="true", limit="2")
    assert first == ["bob/a-one", "bob/b-two"] and 'rel="next"' in headers["Link"]
    reverse, _ = await search(gitea, uid=uid, exclusive="true", sort="alpha", order="desc")
    assert reverse == ["bob/c-three", "bob/b-two", "bob/a-one"]


async def test_search_shows_private_repositories_only_to_who_may_read_them(gitea: SimHandle, team: Team) -> None:
    """Follows SearchRepositoryCondition (Private: signed in and private not false; accessibleRepositoryCondition):
    anonymous callers and private=false see public repositories only."""
    hidden = await gitea.create_repo(team.owner, "hidden", private=True)
    await gitea.api("PUT", f"/repos/{hidden}/topics", json={"topics": ["secret"]})
    assert (await search(gitea, q="secret", topic="true"))[0] == []
    assert (await search(gitea, team.writer.token, q="secret", topic="true"))[0] == []
    assert (await search(gitea, team.owner.token, q="secret", topic="true"))[0] == [hidden]
    assert (await search(gitea, team.owner.token, q="secret", topic="true", private="false"))[0] == []


@pytest.mark.parametrize(("params", "message"), [
    ({"mode": "weird"}, 'Invalid search mode: "weird"'),
    ({"sort": "weird"}, 'Invalid sort mode: "weird"'),
    ({"sort": "alpha", "order": "up"}, 'Invalid sort order: "up"'),
])
async def test_search_refuses_unknown_modes_and_orders(gitea: SimHandle, params: dict[str, str], message: str) -> None:
    """Follows Search: an unknown mode, sort or order answers 422 naming it."""
    status, body, _ = await gitea.request("GET", f"{API}/repos/search", params=params)
    assert (status, body["message"]) == (422, message)


async def test_owner_repository_lists(gitea: SimHandle, team: Team) -> None:
    """Follows routers/api/v1/user/repo.go listUserRepos (also behind ListOrgRepos): the owner's repositories
    by id, private ones only for signed-in callers who may read them; counted before that filter; an
    organisation's list needs an organisation (404 for a user's name)."""
    await gitea.create_repo(team.owner, "zz-private", private=True)
    org = await gitea.create_org(team.owner, "acme")
    tool = await gitea.create_repo(team.owner, "tool", org=org)
    status, body, headers = await gitea.request("GET", f"{API}/users/alice/repos")
    assert (status, [r["full_name"] for r in body], headers["X-Total-Count"]) == (200, [team.repo], "1")
    _, body, headers = await gitea.request("GET", f"{API}/users/alice/repos", token=team.writer.token)
    assert ([r["full_name"] for r in body], headers["X-Total-Count"]) == ([team.repo], "2")
    _, body, _ = await gitea.request("GET", f"{API}/users/alice/repos", token=team.owner.token)
    assert [r["full_name"] for r in body] == [team.repo, "alice/zz-private"]
    _, body, _ = await gitea.request("GET", f"{API}/users/{org}/repos")
    assert [r["full_name"] for r in body] == [tool]
    _, body, _ = await gitea.request("GET", f"{API}/orgs/{org}/repos")
    assert [r["full_name"] for r in body] == [tool]
    status, _, _ = await gitea.request("GET", f"{API}/orgs/alice/repos")
    assert status == 404
    status, _, _ = await gitea.request("GET", f"{API}/users/nobody/repos")
    assert status == 404
