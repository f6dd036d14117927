"""Fault injection, the call log, pagination, permissions and the admin/token API."""

from __future__ import annotations

import time

from gitea_sim.testing import SimHandle

from .conftest import Team


async def test_fail_next_call_before_it_runs(gitea: SimHandle, team: Team) -> None:
    await gitea.fault(method="POST", path="/api/v1/repos/*/labels", status=503, count=1)
    status, body, _ = await gitea.request(
        "POST", f"/api/v1/repos/{team.repo}/labels", token=team.owner.token, json={"name": "x", "color": "#000000"}
    )
    assert status == 503 and body["message"] == "injected fault"
    assert await gitea.api("GET", f"/repos/{team.repo}/labels") == []
    await gitea.create_label(team.repo, "x")  # the fault was used up


async def test_fail_after_committing(gitea: SimHandle, team: Team) -> None:
    await gitea.push_commit(team.repo, team.writer, "feat", {"f": "1"}, base="main")
    pr = await gitea.create_pr(team.repo, team.writer, "feat")
    await gitea.wait_idle()
    await gitea.fault(method="POST", path="re:/pulls/\\d+/merge$", status=500, when="after")
    assert await gitea.merge(team.repo, pr["number"], team.writer) == 500
    assert (await gitea.get_pr(team.repo, pr["number"]))["merged"] is True


async def test_fault_answers_with_its_headers(gitea: SimHandle, team: Team) -> None:
    await gitea.fault(method="GET", path=f"/api/v1/repos/{team.repo}", status=429, headers={"Retry-After": "2"})
    status, _, headers = await gitea.request("GET", f"/api/v1/repos/{team.repo}", token=team.owner.token)
    assert (status, headers.get("Retry-After")) == (429, "2")


async def test_latency(gitea: SimHandle, team: Team) -> None:
    await gitea.fault(method="GET", path=f"/api/v1/repos/{team.repo}", status=0, latency_s=0.3)
    started = time.monotonic()
    await gitea.api("GET", f"/repos/{team.repo}")
    assert time.monotonic() - started >= 0.3


async def test_git_paths_can_fail_too(gitea: SimHandle, team: Team) -> None:
    await gitea.fault(path="*/git-receive-pack", status=500)
    try:
        await gitea.push_commit(team.repo, team.writer, "feat", {"f": "1"}, base="main")
    except Exception as exc:
        assert "500" in str(exc)
    else:
        raise AssertionError("push should have failed")


async def test_ci_that_never_reports_and_ci_failure(gitea: SimHandle, team: Team) -> None:
    await gitea.set_ci(team.repo, "true")
    await gitea.fault(kind="ci", action="silent", repo=team.repo)
    silent = await gitea.push_commit(team.repo, team.writer, "a", {"a": "1"}, base="main")
    await gitea.fault(kind="ci", action="pending_forever")
    pending = await gitea.push_commit(team.repo, team.writer, "b", {"b": "1"}, base="main")
    await gitea.fault(kind="ci", action="fail")
    failed = await gitea.push_commit(team.repo, team.writer, "c", {"c": "1"}, base="main")
    ok = await gitea.push_commit(team.repo, team.writer, "d", {"d": "1"}, base="main")
    await gitea.wait_idle()
    states = {}
    for sha in (silent, pending, failed, ok):
        states[sha] = (await gitea.api("GET", f"/repos/{team.repo}/commits/{sha}/status"))["state"]
    assert states == {silent: "", pending: "pending", failed: "failure", ok: "success"}
    statuses = await gitea.api("GET", f"/repos/{team.repo}/commits/{ok}/statuses")
    assert [s["status"] for s in statuses] == ["success", "pending"]  # newest first
    assert statuses[0]["creator"]["login"] == "ci"
    run = await gitea.sim_api("GET", statuses[0]["target_url"].split(gitea.url, 1)[1])
    assert run["exit_code"] == 0


async def test_a_held_run_reports_its_real_verdict_once_released(gitea: SimHandle, team: Team) -> None:
    await gitea.set_ci(team.repo, "test ! -f broken")
    await gitea.fault(kind="ci", action="silent", repo=team.repo, count=2)
    red = await gitea.push_commit(team.repo, team.writer, "a", {"broken": "1"}, base="main")
    green = await gitea.push_commit(team.repo, team.writer, "b", {"b": "1"}, base="main")
    await gitea.wait_idle()

    async def state(sha: str) -> str:
        return str((await gitea.api("GET", f"/repos/{team.repo}/commits/{sha}/status"))["state"])

    assert [await state(red), await state(green)] == ["", ""]
    released = await gitea.release_ci(team.repo)
    assert [run["sha"] for run in released] == [red, green]
    await gitea.wait_idle()
    assert [await state(red), await state(green)] == ["failure", "success"]
    statuses = await gitea.api("GET", f"/repos/{team.repo}/commits/{green}/statuses")
    assert [s["status"] for s in statuses] == ["success", "pending"]
    assert await gitea.release_ci(team.repo) == []  # released once


async def test_ci_runs_only_on_matching_branches(gitea: SimHandle, team: Team) -> None:
    await gitea.set_ci(team.repo, "true", branches=["merge-bot/**", "main"])
    other = await gitea.push_commit(team.repo, team.writer, "feature", {"a": "1"}, base="main")
    staged = await gitea.push_commit(team.repo, team.writer, "merge-bot/main/1", {"a": "1"}, base="main")
    await gitea.wait_idle()
    assert (await gitea.api("GET", f"/repos/{team.repo}/commits/{other}/status"))["state"] == ""
    assert (await gitea.api("GET", f"/repos/{team.repo}/commits/{staged}/status"))["state"] == "success"


async def test_ci_runner_limit_makes_runs_wait_in_line(gitea: SimHandle, team: Team) -> None:
    """With `runners: 1`, a second push's run is queued (pending at once) and starts only when the first is done;
    each run sees its own id in CI_RUN_ID."""
    await gitea.set_ci(team.repo, 'echo "run $CI_RUN_ID"', delay_s=0.3, runners=1)
    first = await gitea.push_commit(team.repo, team.writer, "a", {"a": "1"}, base="main")
    second = await gitea.push_commit(team.repo, team.writer, "b", {"b": "1"}, base="main")
    third = await gitea.push_commit(team.repo, team.writer, "c", {"c": "1"}, base="main")
    await gitea.wait_idle()
    phases = [(e["sha"], e["phase"]) for e in await gitea.log("ci") if e["phase"] in ("running", "done")]
    assert phases == [(first, "running"), (first, "done"), (second, "running"), (second, "done"),
                      (third, "running"), (third, "done")]
    for sha in (first, second, third):
        statuses = await gitea.api("GET", f"/repos/{team.repo}/commits/{sha}/statuses")
        assert [s["status"] for s in statuses] == ["success", "pending"]
        run = await gitea.sim_api("GET", statuses[0]["target_url"].split(gitea.url, 1)[1])
        assert run["output"] == f"run {run['id']}\n"


async def test_ci_runner_limit_must_be_a_count(gitea: SimHandle, team: Team) -> None:
    for bad in (-1, "2", 1.5, True):
        status, body, _ = await gitea.request("PUT", f"/_sim/ci/{team.repo}", token=gitea.admin_token,
                                              json={"command": "true", "runners": bad})
        assert status == 422, (bad, body)
    assert await gitea.sim_api("GET", f"/_sim/ci/{team.repo}") == []


async def test_log_records_api_calls_and_deliveries(gitea: SimHandle, team: Team) -> None:
    before = (await gitea.log())[-1]["seq"]
    await gitea.api("GET", f"/repos/{team.repo}", token=team.writer.token)
    entries = await gitea.log("api", since=before)
    assert [(e["method"], e["path"], e["status"], e["user"]) for e in entries] == [
        ("GET", f"/api/v1/repos/{team.repo}", 200, "bob")
    ]


async def test_sim_api_needs_the_admin_token(gitea: SimHandle, team: Team) -> None:
    status, _, _ = await gitea.request("GET", "/_sim/log", token=team.owner.token)
    assert status == 403
    status, _, _ = await gitea.request("GET", "/_sim/log")
    assert status == 401


async def test_pagination_with_total_count(gitea: SimHandle, team: Team) -> None:
    for i in range(7):
        await gitea.create_label(team.repo, f"l{i}")
    status, page, headers = await gitea.request(
        "GET", f"/api/v1/repos/{team.repo}/labels?limit=3&page=3", token=team.owner.token
    )
    assert status == 200 and len(page) == 1
    assert headers["X-Total-Count"] == "7"
    _, big, _ = await gitea.request("GET", f"/api/v1/repos/{team.repo}/labels?limit=500", token=team.owner.token)
    assert len(big) == 7
    for i in range(55):
        await gitea.create_label(team.repo, f"m{i:02}")
    _, capped, headers = await gitea.request(
        "GET", f"/api/v1/repos/{team.repo}/labels?limit=500", token=team.owner.token
    )
    assert len(capped) == 50 and headers["X-Total-Count"] == "62"
    assert 'rel="next"' in headers["Link"]
    _, default, _ = await gitea.request("GET", f"/api/v1/repos/{team.repo}/labels", token=team.owner.token)
    assert len(default) == 30


async def test_permission_denials(gitea: SimHandle, team: Team) -> None:
    label = await gitea.create_label(team.repo, "queue")
    await gitea.push_commit(team.repo, team.writer, "feat", {"f": "1"}, base="main")
    pr = await gitea.create_pr(team.repo, team.writer, "feat")
    r, n = f"/api/v1/repos/{team.repo}", pr["number"]
    reader = team.reader.token
    assert (await gitea.request("POST", f"{r}/issues/{n}/labels", token=reader, json={"labels": [label["id"]]}))[
        0
    ] == 403
    assert (await gitea.request("POST", f"{r}/statuses/{pr['head']['sha']}", token=reader, json={"state": "success"}))[
        0
    ] == 403
    assert (
        await gitea.request("PUT", f"{r}/collaborators/rita", token=team.writer.token, json={"permission": "admin"})
    )[0] == 403
    assert (
        await gitea.request("POST", f"{r}/branch_protections", token=team.writer.token, json={"rule_name": "main"})
    )[0] == 403
    # a reader may comment and react
    comment = await gitea.comment(team.repo, n, team.reader, "looks good")
    assert (
        await gitea.request(
            "POST", f"{r}/issues/comments/{comment['id']}/reactions", token=reader, json={"content": "heart"}
        )
    )[0] == 201
    assert (
        await gitea.request(
            "POST", f"{r}/issues/comments/{comment['id']}/reactions", token=reader, json={"content": "party"}
        )
    )[0] == 403
    perm = await gitea.api("GET", f"/repos/{team.repo}/collaborators/rita/permission", token=reader)
    assert (perm["permission"], perm["role_name"]) == ("read", "read")
    owner = await gitea.api("GET", f"/repos/{team.repo}/collaborators/alice/permission")
    assert owner["permission"] == "owner"
    stranger = await gitea.create_user("zed")
    zed = await gitea.api("GET", f"/repos/{team.repo}/collaborators/zed/permission")
    assert zed["permission"] == "read"  # public repository
    assert (await gitea.request("GET", f"{r}/collaborators/zed/permission", token=stranger.token))[0] == 200


async def test_tokens_need_basic_auth_and_admin_api_needs_admin(gitea: SimHandle, team: Team) -> None:
    status, _, _ = await gitea.request("POST", "/api/v1/users/bob/tokens", token=team.writer.token, json={"name": "t2"})
    assert status == 401
    status, _, _ = await gitea.request("POST", "/api/v1/users/bob/tokens", basic=("bob", "wrong"), json={"name": "t2"})
    assert status == 401
    status, _, _ = await gitea.request(
        "POST", "/api/v1/users/alice/tokens", basic=("bob", team.writer.password), json={"name": "t2"}
    )
    assert status == 403
    status, _, _ = await gitea.request(
        "POST", "/api/v1/admin/users", token=team.writer.token, json={"username": "eve", "email": "eve@x.invalid"}
    )
    assert status == 403
    status, _, _ = await gitea.request("GET", "/api/v1/user", token="not-a-token")
    assert status == 401
    me = await gitea.api("GET", "/user", token=team.writer.token)
    assert me["login"] == "bob"
    sudo = await gitea.api("GET", "/user", params={"sudo": "rita"})
    assert sudo["login"] == "rita"
