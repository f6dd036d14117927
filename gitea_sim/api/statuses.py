"""Commit statuses: create, list, combined (routers/api/v1/repo/status.go)."""

from __future__ import annotations

import re

from aiohttp import web

from ..core import STATUS_STATES, combined_state, latest_statuses
from ..model import Access, CommitStatus, Repo
from ..web import (
    ApiError,
    json_response,
    not_found,
    paginate,
    read_json,
    repo_ctx,
    require_access,
    require_doer,
    sim_of,
    str_field,
)

SHA_RE = re.compile(r"^[0-9a-f]{7,40}$")


async def _resolve(request: web.Request, repo: Repo, ref: str) -> str:
    git = sim_of(request).git(repo)
    sha = await git.branch_sha(ref) or await git.resolve(f"refs/tags/{ref}") or await git.resolve(ref)
    if sha is None:
        raise not_found()
    return sha


async def create_status(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    require_access(access, Access.WRITE)
    doer = require_doer(request)
    sha = request.match_info["sha"]
    body = await read_json(request)
    state = str_field(body, "state")
    if state not in STATUS_STATES:
        raise ApiError(400, f"invalid commit status state: {state!r}")
    full = await sim.git(repo).resolve(sha) if SHA_RE.match(sha) else None
    if full is None:
        raise not_found("commit does not exist")
    st = await sim.add_status(repo, full, state, str_field(body, "context"), str_field(body, "description"),
                              str_field(body, "target_url"), doer)
    return json_response(sim.ser.status(repo, st), 201)


def _filtered(request: web.Request, statuses: list[CommitStatus]) -> list[CommitStatus]:
    state = request.query.get("state")
    ordered = sorted(statuses, key=lambda s: s.id, reverse=True)
    return [s for s in ordered if state is None or s.state == state]


async def list_statuses(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    ref = request.match_info.get("sha") or request.match_info["ref"]
    sha = await _resolve(request, repo, ref)
    chunk, headers = paginate(request, _filtered(request, repo.statuses.get(sha, [])))
    return json_response([sim.ser.status(repo, s) for s in chunk], headers=headers)


async def combined_status(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    sha = await _resolve(request, repo, request.match_info["ref"])
    latest = latest_statuses(repo.statuses.get(sha, []))
    chunk, headers = paginate(request, latest)
    api = sim.ser.repo_api(repo)
    # convert.ToCombinedStatus: state "" and statuses null when there are none; total_count is the page's.
    return json_response({
        "state": combined_state(chunk), "sha": sha, "total_count": len(chunk),
        "statuses": [sim.ser.status(repo, s) for s in chunk] if chunk else None,
        "repository": sim.ser.repo(repo, access),
        "commit_url": f"{api}/commits/{sha}", "url": f"{api}/commits/{sha}/status",
    }, headers=headers)


def add_routes(app: web.Application, p: str) -> None:
    r = app.router
    repo = f"{p}/repos/{{owner}}/{{repo}}"
    r.add_post(f"{repo}/statuses/{{sha}}", create_status)
    r.add_get(f"{repo}/statuses/{{sha}}", list_statuses)
    r.add_get(f"{repo}/commits/{{ref:.+}}/statuses", list_statuses)
    r.add_get(f"{repo}/commits/{{ref:.+}}/status", combined_status)
