"""Organisation teams: create and list them, manage and check membership (routers/api/v1/org/team.go)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..model import Team, User
from ..web import (
    ApiError,
    empty,
    forbidden,
    json_response,
    not_found,
    paginate,
    read_json,
    require_doer,
    sim_of,
    str_field,
)

PERMISSIONS = ("read", "write", "admin")


def _org(request: web.Request) -> User:
    org = sim_of(request).state.user_by_name(request.match_info["org"])
    if org is None or not org.is_org:
        raise not_found()
    return org


def _team(request: web.Request) -> Team:
    team = sim_of(request).state.teams.get(int(request.match_info["id"]))
    if team is None:
        raise not_found()
    return team


def _may_manage(request: web.Request, org: User) -> None:
    doer = require_doer(request)
    if doer.id not in org.org_owners and not doer.is_admin:
        raise forbidden("Must be an organization owner")


def team_json(request: web.Request, team: Team) -> dict[str, Any]:
    sim = sim_of(request)
    units = ["repo.code", "repo.issues", "repo.pulls", "repo.releases", "repo.wiki"]
    return {
        "id": team.id,
        "name": team.name,
        "description": team.description,
        "organization": sim.ser.org(sim.state.users[team.org_id]),
        "permission": team.permission,
        "includes_all_repositories": False,
        "can_create_org_repo": False,
        "units": units,
        "units_map": dict.fromkeys(units, team.permission),
    }


async def create_team(request: web.Request) -> web.Response:
    org = _org(request)
    _may_manage(request, org)
    body = await read_json(request)
    name = str_field(body, "name")
    if not name:
        raise ApiError(422, "[Name]: Required")
    sim = sim_of(request)
    if any(t.org_id == org.id and t.name.lower() == name.lower() for t in sim.state.teams.values()):
        raise ApiError(422, f"team already exists [org_id: {org.id}, name: {name}]")
    permission = str_field(body, "permission", "read") or "read"
    if permission not in PERMISSIONS:
        raise ApiError(422, "[Permission]: invalid")
    team = Team(sim.state.next_id("team"), org.id, name, str_field(body, "description"), permission)
    sim.state.teams[team.id] = team
    return json_response(team_json(request, team), 201)


async def list_teams(request: web.Request) -> web.Response:
    org = _org(request)
    require_doer(request)
    teams = sorted((t for t in sim_of(request).state.teams.values() if t.org_id == org.id), key=lambda t: t.id)
    chunk, headers = paginate(request, teams)
    return json_response([team_json(request, t) for t in chunk], headers=headers)


def _member(request: web.Request) -> User:
    user = sim_of(request).state.user_by_name(request.match_info["username"])
    if user is None:
        raise not_found()
    return user


async def get_member(request: web.Request) -> web.Response:
    require_doer(request)
    team = _team(request)
    user = _member(request)
    if user.id not in team.members:
        raise not_found()
    return json_response(sim_of(request).ser.user(user))


async def add_member(request: web.Request) -> web.Response:
    team = _team(request)
    _may_manage(request, sim_of(request).state.users[team.org_id])
    team.members.add(_member(request).id)
    return empty(204)


async def remove_member(request: web.Request) -> web.Response:
    team = _team(request)
    _may_manage(request, sim_of(request).state.users[team.org_id])
    team.members.discard(_member(request).id)
    return empty(204)


def add_routes(app: web.Application, p: str) -> None:
    r = app.router
    r.add_post(f"{p}/orgs/{{org}}/teams", create_team)
    r.add_get(f"{p}/orgs/{{org}}/teams", list_teams)
    r.add_get(f"{p}/teams/{{id:\\d+}}/members/{{username}}", get_member)
    r.add_put(f"{p}/teams/{{id:\\d+}}/members/{{username}}", add_member)
    r.add_delete(f"{p}/teams/{{id:\\d+}}/members/{{username}}", remove_member)
