"""Forks: the fork shares history, PRs from a fork keep refs/pull/N/head in the base repository current."""

from __future__ import annotations

import json

from gitea_sim.gitrepo import run_git
from gitea_sim.testing import SimHandle
from tests.conftest import PAYLOADS

from .conftest import Receiver, Team
from .test_webhooks import shape_errors


async def _base_ref(g: SimHandle, repo: str, ref: str) -> str:
    owner, name = repo.split("/")
    target = g.sim.state.repo_by_name(owner, name)
    assert target is not None
    _, out, _ = await run_git(["-C", str(target.path), "rev-parse", ref])
    return out.strip()


async def test_fork_shares_history_and_names_its_parent(gitea: SimHandle, team: Team) -> None:
    main = (await gitea.api("GET", f"/repos/{team.repo}/branches/main"))["commit"]["id"]
    carol = await gitea.create_user("carol")
    fork = await gitea.fork(team.repo, carol)
    assert fork == "carol/demo"
    data = await gitea.api("GET", f"/repos/{fork}", token=carol.token)
    assert data["fork"] is True and data["parent"]["full_name"] == team.repo
    assert "parent" not in data["parent"]
    assert (await gitea.api("GET", f"/repos/{fork}/branches/main"))["commit"]["id"] == main
    base = await gitea.api("GET", f"/repos/{team.repo}")
    assert base["fork"] is False and "parent" not in base and base["forks_count"] == 1
    forks = await gitea.api("GET", f"/repos/{team.repo}/forks")
    assert [f["full_name"] for f in forks] == [fork]


async def test_fork_refusals(gitea: SimHandle, team: Team) -> None:
    carol = await gitea.create_user("carol")
    await gitea.fork(team.repo, carol)
    status, body, _ = await gitea.request("POST", f"/api/v1/repos/{team.repo}/forks", token=carol.token, json={})
    assert status == 409 and "already forked" in body["message"]
    org = await gitea.create_org(team.owner, "acme")
    status, body, _ = await gitea.request(
        "POST", f"/api/v1/repos/{team.repo}/forks", token=carol.token, json={"organization": org}
    )
    assert status == 403 and "no Member" in body["message"]
    named = await gitea.fork(team.repo, team.owner, org=org, name="demo-fork")
    assert named == "acme/demo-fork"
    status, _, _ = await gitea.request(
        "POST", f"/api/v1/repos/{team.repo}/forks", token=carol.token, json={"organization": "nobody"}
    )
    assert status == 422


async def test_pr_from_a_fork_follows_the_fork_branch(gitea: SimHandle, team: Team, receiver: Receiver) -> None:
    await gitea.add_hook(team.repo, receiver.url, "s")
    carol = await gitea.create_user("carol")
    fork = await gitea.fork(team.repo, carol)
    first = await gitea.push_commit(fork, carol, "topic", {"c.txt": "1\n"}, base="main")
    # A branch of the same name in the base repository is another PR's business.
    await gitea.push_commit(team.repo, team.writer, "topic", {"other.txt": "x\n"}, base="main")
    pr = await gitea.create_pr(team.repo, carol, head="carol:topic", title="From a fork")
    n = pr["number"]
    assert pr["head"]["repo"]["full_name"] == fork and pr["head"]["repo_id"] != pr["base"]["repo_id"]
    assert pr["head"]["repo"]["fork"] is True and pr["head"]["repo"]["parent"]["full_name"] == team.repo
    assert (pr["head"]["ref"], pr["head"]["sha"]) == ("topic", first)
    assert pr["allow_maintainer_edit"] is False
    assert await _base_ref(gitea, team.repo, f"refs/pull/{n}/head") == first
    await gitea.wait_idle()
    assert (await gitea.get_pr(team.repo, n))["mergeable"] is True

    second = await gitea.push_commit(fork, carol, "topic", {"c.txt": "2\n"})
    sync = await receiver.wait_for(lambda r: r.event_type == "pull_request_sync")
    body = sync.json()
    assert body["repository"]["full_name"] == team.repo
    assert body["pull_request"]["head"]["sha"] == second
    assert body["pull_request"]["head"]["repo"]["full_name"] == fork
    assert await _base_ref(gitea, team.repo, f"refs/pull/{n}/head") == second
    await gitea.push_commit(team.repo, team.writer, "topic", {"other.txt": "y\n"})
    await gitea.wait_idle()
    assert len(receiver.of_type("pull_request_sync")) == 1
    assert (await gitea.get_pr(team.repo, n))["head"]["sha"] == second

    edited = await gitea.api(
        "PATCH", f"/repos/{team.repo}/pulls/{n}", token=carol.token, json={"allow_maintainer_edit": True}
    )
    assert edited["allow_maintainer_edit"] is True
    status, _, _ = await gitea.request(
        "PATCH", f"/api/v1/repos/{team.repo}/pulls/{n}", token=team.writer.token, json={"allow_maintainer_edit": False}
    )
    assert status == 403

    assert await gitea.merge(team.repo, n, team.owner) == 200
    merged = await gitea.get_pr(team.repo, n)
    assert merged["merged"] is True
    tree = await gitea.api("GET", f"/repos/{team.repo}/git/commits/{merged['merge_commit_sha']}")
    assert [p["sha"] for p in tree["parents"]][1] == second
    assert f"from {fork}:topic into main" in tree["commit"]["message"]
    # The fork keeps its branch; nothing was pushed to it.
    assert (await gitea.api("GET", f"/repos/{fork}/branches/topic"))["commit"]["id"] == second


async def test_pr_head_must_name_a_fork_the_doer_can_read(gitea: SimHandle, team: Team) -> None:
    carol = await gitea.create_user("carol")
    await gitea.push_commit(team.repo, team.writer, "topic", {"c.txt": "1\n"}, base="main")
    for head in ("carol:topic", "nobody:topic"):
        status, _, _ = await gitea.request(
            "POST",
            f"/api/v1/repos/{team.repo}/pulls",
            token=carol.token,
            json={"head": head, "base": "main", "title": "t"},
        )
        assert status == 404, head
    fork = await gitea.fork(team.repo, carol)
    status, _, _ = await gitea.request(
        "POST",
        f"/api/v1/repos/{team.repo}/pulls",
        token=carol.token,
        json={"head": "carol:missing", "base": "main", "title": "t"},
    )
    assert status == 404
    await gitea.push_commit(fork, carol, "topic", {"c.txt": "2\n"}, base="main", force=True)  # cloned along
    await gitea.create_pr(team.repo, carol, head="carol:topic")
    status, body, _ = await gitea.request(
        "POST",
        f"/api/v1/repos/{team.repo}/pulls",
        token=carol.token,
        json={"head": "carol:topic", "base": "main", "title": "again"},
    )
    assert status == 409 and "already exists" in body["message"]


async def test_fork_pr_webhook_has_the_shape_of_the_real_fork_capture(
    gitea: SimHandle, team: Team, receiver: Receiver
) -> None:
    await gitea.add_hook(team.repo, receiver.url, "s")
    carol = await gitea.create_user("carol")
    fork = await gitea.fork(team.repo, carol)
    await gitea.push_commit(fork, carol, "topic", {"c.txt": "1\n"}, base="main")
    await gitea.create_pr(team.repo, carol, head="carol:topic")
    opened = (await receiver.wait_for(lambda r: r.json().get("action") == "opened")).json()
    capture = json.loads((PAYLOADS / "gitea-pull_request-opened.json").read_text())
    capture = capture.get("body", capture)
    assert capture["pull_request"]["head"]["repo"]["fork"] is True  # the capture is a PR from a fork
    assert shape_errors(capture["pull_request"]["head"], opened["pull_request"]["head"], "$.head") == []
    assert opened["pull_request"]["head"]["repo"]["parent"]["full_name"] == team.repo
