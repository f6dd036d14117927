"""Gitea Actions runs of the simulated CI: the listing (routers/api/v1/shared/action.go ListRuns, Gitea 1.23 and
newer: ``{"workflow_runs": [...], "total_count": n}``, filtered by ``head_sha``, ``branch`` and ``status``) and
one run; and, only where the simulated server is newer than 1.25 (``PUT /_sim/features {"actions_rerun": true}``),
``POST .../actions/runs/{run}/rerun-failed-jobs`` (routers/api/v1/repo/action.go RerunFailedWorkflowRun: 201 with
no body; 400 when the run is not done or has no failed job; 404 for an unknown run). On 1.25 and on Forgejo the
route does not exist: 404."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..ci import CIRun
from ..model import Access, Repo
from ..web import ApiError, json_response, not_found, paginate, repo_ctx, require_access, require_doer, sim_of


def status_of(run: CIRun) -> tuple[str, str]:
    """(status, conclusion) as convert.ToActionsStatus reports them."""
    if run.state == "queued":
        return "queued", ""
    if run.state in ("running", "silent"):
        return "in_progress", ""
    return "completed", "success" if run.state == "success" else "failure"


def _run_json(request: web.Request, repo: Repo, run: CIRun) -> dict[str, Any]:
    sim = sim_of(request)
    status, conclusion = status_of(run)
    html = f"{sim.ser.repo_html(repo)}/actions/runs/{run.id}"
    return {
        "id": run.id,
        "run_number": run.id,
        "run_attempt": run.attempt,
        "head_sha": run.sha,
        "head_branch": run.branch,
        "event": "push",
        "status": status,
        "conclusion": conclusion,
        "display_title": run.context,
        "path": f"ci.yaml@refs/heads/{run.branch}",
        "repository_id": repo.id,
        "html_url": html,
        "url": f"{sim.ser.repo_api(repo)}/actions/runs/{run.id}",
    }


def _run(request: web.Request, repo: Repo) -> CIRun:
    try:
        run_id = int(request.match_info["run"])
    except ValueError:
        raise not_found() from None
    run = next((r for r in sim_of(request).ci.actions_runs(repo) if r.id == run_id), None)
    if run is None:
        raise not_found("workflow run not found")
    return run


async def list_runs(request: web.Request) -> web.Response:
    repo, _ = repo_ctx(request)
    query = request.query
    runs = sim_of(request).ci.actions_runs(repo)
    if sha := query.get("head_sha"):
        runs = [r for r in runs if r.sha == sha]
    if branch := query.get("branch"):
        runs = [r for r in runs if r.branch == branch]
    if wanted := query.get("status"):
        runs = [r for r in runs if wanted in status_of(r)]
    chunk, headers = paginate(request, runs)
    body = {"workflow_runs": [_run_json(request, repo, r) for r in chunk], "total_count": len(runs)}
    return json_response(body, headers=headers)


async def get_run(request: web.Request) -> web.Response:
    repo, _ = repo_ctx(request)
    return json_response(_run_json(request, repo, _run(request, repo)))


async def rerun_failed_jobs(request: web.Request) -> web.Response:
    sim = sim_of(request)
    if sim.flavour == "forgejo" or not sim.features.get("actions_rerun"):
        raise not_found()  # Gitea 1.25 and Forgejo register no such route
    repo, access = repo_ctx(request)
    require_doer(request)
    require_access(access, Access.WRITE)
    run = _run(request, repo)
    status, conclusion = status_of(run)
    if status != "completed":
        raise ApiError(400, "this workflow run is not done")
    if conclusion != "failure":
        raise ApiError(400, "this workflow run has no failed jobs to re-run")
    try:
        await sim.ci.rerun(repo, run)
    except LookupError:
        raise not_found("workflow not found") from None
    sim.log.add("actions", repo=run.repo, run=run.id, attempt=run.attempt, action="rerun-failed-jobs")
    return web.Response(status=201)


def add_routes(app: web.Application, api: str) -> None:
    base = f"{api}/repos/{{owner}}/{{repo}}/actions/runs"
    app.router.add_get(base, list_runs)
    app.router.add_get(f"{base}/{{run}}", get_run)
    app.router.add_post(f"{base}/{{run}}/rerun-failed-jobs", rerun_failed_jobs)
