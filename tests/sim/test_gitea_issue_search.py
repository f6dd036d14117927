"""GET /repos/issues/search as Gitea's SearchIssues answers it (routers/api/v1/repo/issue.go), the issue's update
time that every comment of any type bumps (models/issues/comment.go, CreateComment), a repository's update time
that a topic bumps and archiving does not (models/repo/topic.go; SetArchiveRepoState with NoAutoTime), and the
seeding helper POST /_sim/seed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gitea_sim.testing import SimHandle, SimUser


async def feed(gitea: SimHandle, user: SimUser, **params: str) -> list[tuple[str, int]]:
    items = await gitea.api("GET", "/repos/issues/search", token=user.token, params=params)
    return [(item["repository"]["full_name"], item["number"]) for item in items]


async def test_the_feed_names_what_was_updated_since(gitea: SimHandle) -> None:
    alice = await gitea.create_user("alice")
    repo = await gitea.create_repo(alice, "demo")
    await gitea.push_commit(repo, alice, "feature", {"f.txt": "f\n"}, base="main")
    pr = await gitea.create_pr(repo, alice, head="feature", base="main", title="Feature")
    await gitea.api("POST", f"/repos/{repo}/issues", token=alice.token, json={"title": "An issue"})
    assert await feed(gitea, alice, type="pulls", owner="alice") == [(repo, pr["number"])]
    assert len(await feed(gitea, alice, owner="alice")) == 2  # issues and pulls, newest first
    later = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    assert await feed(gitea, alice, type="pulls", owner="alice", since=later) == []
    await gitea.api("PATCH", f"/repos/{repo}/pulls/{pr['number']}", token=alice.token, json={"state": "closed"})
    assert await feed(gitea, alice, type="pulls", owner="alice") == []  # open only, by default
    assert await feed(gitea, alice, type="pulls", owner="alice", state="all") == [(repo, pr["number"])]


async def test_a_label_and_a_comment_bump_the_pull_request(gitea: SimHandle) -> None:
    alice = await gitea.create_user("alice")
    repo = await gitea.create_repo(alice, "demo")
    await gitea.create_label(repo, "queue", "#00aa00")
    await gitea.push_commit(repo, alice, "feature", {"f.txt": "f\n"}, base="main")
    pr = await gitea.create_pr(repo, alice, head="feature", base="main", title="Feature")
    state = gitea.sim.state.repo_by_name("alice", "demo")
    assert state is not None
    issue = state.issues[pr["number"]]
    old = issue.updated_at = issue.updated_at - timedelta(minutes=5)
    await gitea.api("POST", f"/repos/{repo}/issues/{pr['number']}/labels", token=alice.token,
                    json={"labels": ["queue"]})
    assert issue.updated_at > old
    old = issue.updated_at = issue.updated_at - timedelta(minutes=5)
    await gitea.comment(repo, pr["number"], alice, "a comment")
    assert issue.updated_at > old
    since = (old + timedelta(minutes=1)).isoformat()
    assert await feed(gitea, alice, type="pulls", owner="alice", since=since) == [(repo, pr["number"])]


async def test_a_topic_bumps_the_repository_and_archiving_does_not(gitea: SimHandle) -> None:
    alice = await gitea.create_user("alice")
    repo = await gitea.create_repo(alice, "demo")
    state = gitea.sim.state.repo_by_name("alice", "demo")
    assert state is not None
    old = state.updated_at = state.updated_at - timedelta(hours=1)
    await gitea.api("PATCH", f"/repos/{repo}", token=alice.token, json={"archived": True})
    assert state.updated_at == old
    await gitea.api("PATCH", f"/repos/{repo}", token=alice.token, json={"archived": False})
    await gitea.api("PUT", f"/repos/{repo}/topics/queue", token=alice.token)
    assert state.updated_at > old
    found = await gitea.api("GET", "/repos/search", token=alice.token,
                            params={"sort": "updated", "order": "desc", "q": "queue", "topic": "true"})
    assert [r["full_name"] for r in found["data"]] == [repo]


async def test_seeding_makes_repositories_and_pull_requests_at_once(gitea: SimHandle) -> None:
    bot = await gitea.create_user("bot")
    made = await gitea.sim_api("POST", "/_sim/seed", {
        "owner": "many", "org": True, "repos": 3, "pulls": [2, 0, 1], "collaborators": {"bot": "admin"},
        "topics": ["queue"],
    })
    assert made == {"repos": ["many/repo0000", "many/repo0001", "many/repo0002"], "pulls": 3}
    listed = await gitea.api("GET", "/orgs/many/repos", token=bot.token)
    assert [(r["full_name"], r["permissions"]["admin"], r["topics"]) for r in listed] == [
        (name, True, ["queue"]) for name in made["repos"]
    ]
    pulls = await gitea.api("GET", "/repos/many/repo0000/pulls", token=bot.token)
    assert [p["number"] for p in pulls] == [2, 1]
    hour_ago = (datetime.now(UTC) - timedelta(minutes=30)).isoformat()
    assert await feed(gitea, bot, owner="many", type="pulls", since=hour_ago) == []  # seeded as history
    status, _, _ = await gitea.request("POST", "/_sim/seed", token=bot.token, json={"owner": "x", "repos": 1})
    assert status == 403
