"""End to end through the REST API and git only (the script would run against a real Gitea, save the
/_sim/ci line), plus the round-trip time a bot's test pays per PR: push -> CI status -> merge."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from gitea_sim.testing import SimHandle

from .conftest import Receiver, make_team

CI_SCRIPT = 'set -e\n. ./api.sh\nfor f in use_*.sh; do [ -f "$f" ] && . "./$f"; done\ntrue\n'


async def test_full_scenario_over_rest_and_git(gitea: SimHandle, receiver: Receiver) -> None:
    team = await make_team(gitea)
    repo = team.repo
    await gitea.push_commit(repo, team.owner, "main", {"ci.sh": CI_SCRIPT, "api.sh": "greet() { echo hi; }\n"})
    await gitea.protect(
        repo,
        "main",
        enable_push=True,
        enable_push_whitelist=True,
        push_whitelist_usernames=["alice"],
        enable_status_check=True,
        status_check_contexts=["ci/test"],
    )
    await gitea.add_hook(repo, receiver.url, "secret")
    await gitea.set_ci(repo, "sh ci.sh", context="ci/test")

    sha = await gitea.push_commit(repo, team.writer, "feature", {"use_feature.sh": "greet >/dev/null\n"}, base="main")
    pr = await gitea.create_pr(repo, team.writer, "feature", title="Use greet")
    comment = await gitea.comment(repo, pr["number"], team.reader, "/merge")
    delivery = await receiver.wait_for(lambda r: r.event_type == "pull_request_comment")
    assert delivery.json()["comment"]["id"] == comment["id"]
    expected = hmac.new(b"secret", delivery.body, hashlib.sha256).hexdigest()
    assert delivery.headers["X-Gitea-Signature"] == expected
    status = await receiver.wait_for(
        lambda r: r.event_type == "status" and r.json()["state"] == "success" and r.json()["sha"] == sha
    )
    assert status.json()["context"] == "ci/test"
    await gitea.wait_idle()
    combined = await gitea.api("GET", f"/repos/{repo}/commits/{sha}/status", token=team.writer.token)
    assert combined["state"] == "success"
    perm = await gitea.api("GET", f"/repos/{repo}/collaborators/rita/permission")
    assert perm["permission"] == "read"
    assert await gitea.merge(repo, pr["number"], team.reader) == 405
    assert await gitea.merge(repo, pr["number"], team.writer, "merge", head_commit_id=sha) == 200
    closed = await receiver.wait_for(lambda r: r.event_type == "pull_request" and r.json()["action"] == "closed")
    assert closed.json()["pull_request"]["merged"] is True


async def test_semantic_conflict_fails_for_real(gitea: SimHandle) -> None:
    """Two PRs green alone, red together: the CI runs the repository's own code."""
    team = await make_team(gitea)
    repo = team.repo
    await gitea.push_commit(repo, team.owner, "main", {"ci.sh": CI_SCRIPT, "api.sh": "greet() { echo hi; }\n"})
    await gitea.set_ci(repo, "sh ci.sh")
    rename = await gitea.push_commit(repo, team.writer, "rename", {"api.sh": "hello() { echo hi; }\n"}, base="main")
    use = await gitea.push_commit(repo, team.writer, "use", {"use_b.sh": "greet >/dev/null\n"}, base="main")
    a = await gitea.create_pr(repo, team.writer, "rename")
    b = await gitea.create_pr(repo, team.writer, "use")
    await gitea.wait_idle()
    for sha in (rename, use):
        combined = await gitea.api("GET", f"/repos/{repo}/commits/{sha}/status")
        assert combined["state"] == "success"
    assert await gitea.merge(repo, a["number"], team.writer) == 200
    assert await gitea.merge(repo, b["number"], team.writer) == 405  # re-checking against the new base
    await gitea.wait_idle()
    assert await gitea.merge(repo, b["number"], team.writer) == 200
    await gitea.wait_idle()
    combined = await gitea.api("GET", f"/repos/{repo}/commits/main/status")
    assert combined["state"] == "failure"


async def test_pr_round_trips_push_ci_merge(gitea: SimHandle) -> None:
    """push -> CI pending/success (real `sh` run in a checkout) -> merge with head_commit_id, five times over.
    How long a round trip takes is benchmark output (`bench/queue.py` measures it as its baseline), not
    asserted here."""
    team = await make_team(gitea)
    repo = team.repo
    await gitea.push_commit(repo, team.owner, "main", {"ci.sh": "test -f README.md\n"})
    await gitea.protect(repo, "main", enable_status_check=True, status_check_contexts=["ci/test"])
    await gitea.set_ci(repo, "sh ci.sh", delay_s=0)
    await gitea.clone(repo, team.writer)
    for i in range(5):
        sha = await gitea.push_commit(repo, team.writer, f"rt{i}", {f"f{i}.txt": "x\n"}, base="main")
        pr = await gitea.create_pr(repo, team.writer, f"rt{i}")
        while True:
            combined = await gitea.api("GET", f"/repos/{repo}/commits/{sha}/status")
            pulled = await gitea.get_pr(repo, pr["number"])
            if combined["state"] == "success" and pulled["mergeable"]:
                break
            await asyncio.sleep(0.01)
        assert await gitea.merge(repo, pr["number"], team.writer, "merge", head_commit_id=sha) == 200
        merged = await gitea.get_pr(repo, pr["number"])
        assert merged["merged"] is True
        main = await gitea.api("GET", f"/repos/{repo}/branches/main")
        assert main["commit"]["id"] == merged["merge_commit_sha"]
