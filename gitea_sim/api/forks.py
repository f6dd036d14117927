"""Forks: `POST|GET /repos/{owner}/{repo}/forks` (routers/api/v1/repo/fork.go)."""

from __future__ import annotations

from aiohttp import web

from ..forks import fork_repo
from ..model import Access
from ..web import (
    ApiError,
    doer_of,
    forbidden,
    json_response,
    paginate,
    read_json,
    repo_ctx,
    require_doer,
    sim_of,
    str_field,
)


async def list_forks(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    doer = doer_of(request)
    visible = [r for r in sim.state.forks_of(repo) if sim.perms.access(r, doer) >= Access.READ]
    chunk, headers = paginate(request, visible)
    return json_response([sim.ser.repo(r, sim.perms.access(r, doer)) for r in chunk], headers=headers)


async def create_fork(request: web.Request) -> web.Response:
    """CreateFork: into the doer's account or an organisation they belong to; 202 with the new repository."""
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    doer = require_doer(request)
    body = await read_json(request)
    owner = doer
    if body.get("organization") is not None:
        org_name = str_field(body, "organization")
        org = sim.state.user_by_name(org_name)
        if org is None or not org.is_org:
            raise ApiError(422, f"org does not exist [id: 0, name: {org_name}]")
        if doer.id not in org.org_owners and not doer.is_admin:
            raise forbidden(f"User is no Member of Organisation '{org.login}'")
        owner = org
    name = str_field(body, "name") if body.get("name") is not None else repo.name
    if not name:
        raise ApiError(422, "[Name]: Required")
    fork = await fork_repo(sim, repo, owner, name)
    return json_response(sim.ser.repo(fork, Access.OWNER), 202)


def add_routes(app: web.Application, p: str) -> None:
    repo = f"{p}/repos/{{owner}}/{{repo}}"
    app.router.add_get(f"{repo}/forks", list_forks)
    app.router.add_post(f"{repo}/forks", create_fork)
