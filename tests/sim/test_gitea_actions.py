"""The simulated CI's Gitea Actions surface, held to Gitea's own behaviour:

* ``GET /repos/{o}/{r}/actions/runs`` (routers/api/v1/shared/action.go ListRuns, Gitea 1.23+): an object with
  ``workflow_runs`` and ``total_count``, filtered by ``head_sha``; ``status``/``conclusion`` as
  convert.ToActionsStatus maps them (completed + success/failure, in_progress, queued);
* ``POST .../actions/runs/{run}/rerun-failed-jobs`` (routers/api/v1/repo/action.go RerunFailedWorkflowRun, newer
  than 1.25): 201 and a new attempt of the same run (``run_attempt`` 2) on the same commit, whose ``pending`` is
  there when the call answers (the jobs are reset in the request, services/actions/rerun.go); 400 for a run that
  is not done or has no failed job; 403 for a reader; 404 for an unknown run, and on Gitea 1.25 and Forgejo,
  which have no such route.
"""

from __future__ import annotations

from gitea_sim.testing import SimHandle
from tests.sim.conftest import Team, make_team


async def runs_of(gitea: SimHandle, repo: str, sha: str) -> list[dict[str, object]]:
    body = await gitea.api("GET", f"/repos/{repo}/actions/runs?head_sha={sha}")
    assert body["total_count"] == len(body["workflow_runs"])
    return list(body["workflow_runs"])


async def test_runs_are_listed_by_commit_with_gitea_status_and_conclusion(gitea: SimHandle, team: Team) -> None:
    await gitea.set_ci(team.repo, "test ! -e bad")
    good = await gitea.push_commit(team.repo, team.writer, "good", {"a": "1"}, base="main")
    bad = await gitea.push_commit(team.repo, team.writer, "bad", {"bad": "1"}, base="main")
    await gitea.wait_idle()
    [ok] = await runs_of(gitea, team.repo, good)
    [red] = await runs_of(gitea, team.repo, bad)
    assert (ok["status"], ok["conclusion"], ok["head_branch"], ok["run_attempt"]) == ("completed", "success", "good", 1)
    assert (red["status"], red["conclusion"], red["head_sha"]) == ("completed", "failure", bad)
    assert await runs_of(gitea, team.repo, "0" * 40) == []
    one = await gitea.api("GET", f"/repos/{team.repo}/actions/runs/{red['id']}")
    assert one["id"] == red["id"]


async def test_another_ci_posting_statuses_has_no_actions_runs(gitea: SimHandle, team: Team) -> None:
    await gitea.set_ci(team.repo, "true", actions=False)
    sha = await gitea.push_commit(team.repo, team.writer, "x", {"a": "1"}, base="main")
    await gitea.wait_idle()
    assert (await gitea.api("GET", f"/repos/{team.repo}/commits/{sha}/status"))["state"] == "success"
    assert await runs_of(gitea, team.repo, sha) == []


async def test_rerun_failed_jobs_runs_the_same_commit_again(gitea: SimHandle, team: Team) -> None:
    await gitea.features(actions_rerun=True)
    assert (await gitea.api("GET", "/version"))["version"] == "1.26.0"
    await gitea.set_ci(team.repo, 'echo "attempt $CI_RUN_ATTEMPT"', delay_s=0.2)
    await gitea.fault(kind="ci", action="fail", repo=team.repo, count=1)
    sha = await gitea.push_commit(team.repo, team.writer, "x", {"a": "1"}, base="main")
    await gitea.wait_idle()
    [run] = await runs_of(gitea, team.repo, sha)
    assert run["conclusion"] == "failure"

    status, body, _ = await gitea.request(
        "POST", f"/api/v1/repos/{team.repo}/actions/runs/{run['id']}/rerun-failed-jobs", token=team.writer.token
    )
    assert status == 201, body
    latest = (await gitea.api("GET", f"/repos/{team.repo}/commits/{sha}/statuses"))[0]
    assert latest["status"] == "pending"  # reset within the request
    [again] = await runs_of(gitea, team.repo, sha)
    assert (again["id"], again["run_attempt"]) == (run["id"], 2)
    assert again["status"] in ("queued", "in_progress")
    await gitea.wait_idle()
    [done] = await runs_of(gitea, team.repo, sha)
    assert (done["status"], done["conclusion"], done["run_attempt"]) == ("completed", "success", 2)
    statuses = await gitea.api("GET", f"/repos/{team.repo}/commits/{sha}/statuses")
    assert [s["status"] for s in statuses] == ["success", "pending", "failure", "pending"]
    output = await gitea.sim_api("GET", statuses[0]["target_url"].split(gitea.url, 1)[1])
    assert output["output"] == "attempt 2\n"


async def test_rerun_refusals(gitea: SimHandle, team: Team) -> None:
    await gitea.set_ci(team.repo, "true")
    sha = await gitea.push_commit(team.repo, team.writer, "x", {"a": "1"}, base="main")
    await gitea.wait_idle()
    [run] = await runs_of(gitea, team.repo, sha)
    path = f"/api/v1/repos/{team.repo}/actions/runs/{run['id']}/rerun-failed-jobs"
    status, _, _ = await gitea.request("POST", path, token=team.writer.token)
    assert status == 404  # Gitea 1.25: no such route
    await gitea.features(actions_rerun=True)
    status, body, _ = await gitea.request("POST", path, token=team.writer.token)
    assert (status, body["message"]) == (400, "this workflow run has no failed jobs to re-run")
    status, _, _ = await gitea.request("POST", path, token=team.reader.token)
    assert status == 403
    status, _, _ = await gitea.request(
        "POST", f"/api/v1/repos/{team.repo}/actions/runs/999/rerun-failed-jobs", token=team.writer.token
    )
    assert status == 404
    status, _, _ = await gitea.request("PUT", "/_sim/features", token=gitea.admin_token, json={"nope": True})
    assert status == 422


async def test_forgejo_has_no_rerun_route(forgejo: SimHandle) -> None:
    team = await make_team(forgejo)
    await forgejo.set_ci(team.repo, "false")
    sha = await forgejo.push_commit(team.repo, team.writer, "x", {"a": "1"}, base="main")
    await forgejo.wait_idle()
    await forgejo.features(actions_rerun=True)
    [run] = await runs_of(forgejo, team.repo, sha)
    path = f"/api/v1/repos/{team.repo}/actions/runs/{run['id']}/rerun-failed-jobs"
    status, _, _ = await forgejo.request("POST", path, token=team.writer.token)
    assert status == 404
