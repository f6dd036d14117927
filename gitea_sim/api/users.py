"""Users, tokens, organisations, repositories and collaborators."""

from __future__ import annotations

import re
import shutil

from aiohttp import web

from ..model import ACCESS_BY_NAME, Access, Repo, User, utcnow
from ..scopes import KNOWN as KNOWN_SCOPES
from ..web import (
    ApiError,
    AuthError,
    authenticate,
    bool_field,
    doer_of,
    empty,
    forbidden,
    json_response,
    list_field,
    not_found,
    paginate,
    read_json,
    repo_ctx,
    require_access,
    require_doer,
    sim_of,
    str_field,
)

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
EDITABLE_REPO_FIELDS = (
    "has_issues", "has_wiki", "has_pull_requests", "has_projects", "has_releases", "has_packages", "has_actions",
    "ignore_whitespace_conflicts", "allow_merge_commits", "allow_rebase", "allow_rebase_explicit",
    "allow_squash_merge", "allow_fast_forward_only_merge", "allow_manual_merge", "autodetect_manual_merge",
    "allow_rebase_update", "default_delete_branch_after_merge", "default_merge_style",
    "default_allow_maintainer_edit", "archived", "template", "website",
)


async def version(request: web.Request) -> web.Response:
    return json_response({"version": sim_of(request).version})


async def current_user(request: web.Request) -> web.Response:
    return json_response(sim_of(request).ser.user(require_doer(request)))


async def get_user(request: web.Request) -> web.Response:
    sim = sim_of(request)
    user = sim.state.user_by_name(request.match_info["username"])
    if user is None:
        raise not_found()
    return json_response(sim.ser.user(user))


def require_site_admin(request: web.Request) -> User:
    doer = require_doer(request)
    if not doer.is_admin:
        raise forbidden("reqSiteAdmin")
    return doer


async def admin_create_user(request: web.Request) -> web.Response:
    require_site_admin(request)
    sim = sim_of(request)
    body = await read_json(request)
    username, email = str_field(body, "username"), str_field(body, "email")
    if not username or not email or not NAME_RE.match(username):
        raise ApiError(422, "[Username]: Required / invalid")
    if sim.state.user_by_name(username) is not None:
        raise ApiError(422, f"user already exists [name: {username}]")
    if any(u.email.lower() == email.lower() for u in sim.state.users.values()):
        raise ApiError(422, f"e-mail already in use [email: {email}]")
    user = sim.create_user(username, email, password=str_field(body, "password"),
                           full_name=str_field(body, "full_name"), visibility=str_field(body, "visibility", "public"))
    user.must_change_password = bool_field(body, "must_change_password", False)
    return json_response(sim.ser.user(user), 201)


async def admin_list_users(request: web.Request) -> web.Response:
    require_site_admin(request)
    sim = sim_of(request)
    users = [u for u in sim.state.users.values() if not u.is_org]
    chunk, headers = paginate(request, users)
    return json_response([sim.ser.user(u) for u in chunk], headers=headers)


def _token_owner(request: web.Request) -> User:
    """Token endpoints accept basic auth only (reqBasicOrRevProxyAuth), for oneself (or a site admin)."""
    sim = sim_of(request)
    if request.headers.get("Authorization", "").lower().startswith(("token ", "bearer ")):
        raise ApiError(401, "auth required")
    try:
        doer = authenticate(sim, request)
    except AuthError as exc:
        raise ApiError(401, str(exc)) from None
    if doer is None:
        raise ApiError(401, "auth required")
    target = sim.state.user_by_name(request.match_info["username"])
    if target is None:
        raise not_found()
    if target.id != doer.id and not doer.is_admin:
        raise forbidden("doer should be the site admin or be same as the contextUser")
    return target


async def create_token(request: web.Request) -> web.Response:
    sim = sim_of(request)
    user = _token_owner(request)
    body = await read_json(request)
    name = str_field(body, "name")
    if not name:
        raise ApiError(422, "[Name]: Required")
    if any(t.user_id == user.id and t.name == name for t in sim.state.tokens.values()):
        raise ApiError(400, "access token name has been used already")
    scopes = [str(s) for s in list_field(body, "scopes")] or ["all"]
    unknown = [s for s in scopes if s not in KNOWN_SCOPES]
    if unknown:  # AccessTokenScope.Normalize refuses names it does not know
        raise ApiError(400, f"invalid access token scope provided: invalid access token scope: {unknown[0]}")
    token = sim.add_token(user, name, scopes=scopes)
    return json_response(sim.ser.token(token, with_secret=True), 201)


async def list_tokens(request: web.Request) -> web.Response:
    sim = sim_of(request)
    user = _token_owner(request)
    tokens = [t for t in sim.state.tokens.values() if t.user_id == user.id]
    chunk, headers = paginate(request, tokens)
    return json_response([sim.ser.token(t, with_secret=False) for t in chunk], headers=headers)


# --- organisations ---
async def create_org(request: web.Request) -> web.Response:
    sim = sim_of(request)
    doer = require_doer(request)
    body = await read_json(request)
    name = str_field(body, "username")
    if not name or not NAME_RE.match(name):
        raise ApiError(422, "[UserName]: Required")
    if sim.state.user_by_name(name) is not None:
        raise ApiError(422, f"user already exists [name: {name}]")
    org = sim.create_user(name, str_field(body, "email") or f"{name.lower()}@org.sim.invalid",
                          full_name=str_field(body, "full_name"), is_org=True,
                          visibility=str_field(body, "visibility", "public"))
    org.description = str_field(body, "description")
    org.org_owners.add(doer.id)
    return json_response(sim.ser.org(org), 201)


async def get_org(request: web.Request) -> web.Response:
    sim = sim_of(request)
    org = sim.state.user_by_name(request.match_info["org"])
    if org is None or not org.is_org:
        raise not_found()
    return json_response(sim.ser.org(org))


# --- repositories ---
async def _create_repo(request: web.Request, owner: User) -> web.Response:
    sim = sim_of(request)
    doer = require_doer(request)
    body = await read_json(request)
    name = str_field(body, "name")
    if not name or not NAME_RE.match(name) or name.lower().endswith(".git"):
        raise ApiError(422, "[Name]: Required / invalid repository name")
    if sim.state.repo_by_name(owner.login, name) is not None:
        raise ApiError(409, "The repository with the same name already exists.")
    repo = await sim.create_repo(owner, name, description=str_field(body, "description"),
                                 private=bool_field(body, "private"), auto_init=bool_field(body, "auto_init"),
                                 default_branch=str_field(body, "default_branch"), readme=str_field(body, "readme"),
                                 creator=doer)
    return json_response(sim.ser.repo(repo, sim.perms.access(repo, doer)), 201)


async def create_user_repo(request: web.Request) -> web.Response:
    return await _create_repo(request, require_doer(request))


async def admin_create_repo(request: web.Request) -> web.Response:
    require_site_admin(request)
    owner = sim_of(request).state.user_by_name(request.match_info["username"])
    if owner is None:
        raise not_found()
    return await _create_repo(request, owner)


async def create_org_repo(request: web.Request) -> web.Response:
    sim = sim_of(request)
    doer = require_doer(request)
    org = sim.state.user_by_name(request.match_info["org"])
    if org is None or not org.is_org:
        raise not_found()
    if doer.id not in org.org_owners and not doer.is_admin:
        raise forbidden("Given user is not allowed to create repository in organization.")
    return await _create_repo(request, org)


def _repo_list(request: web.Request, repos: list[Repo]) -> web.Response:
    sim = sim_of(request)
    doer = doer_of(request)
    visible = [r for r in repos if sim.perms.access(r, doer) >= Access.READ]
    chunk, headers = paginate(request, sorted(visible, key=lambda r: r.id))
    return json_response([sim.ser.repo(r, sim.perms.access(r, doer)) for r in chunk], headers=headers)


async def list_user_repos(request: web.Request) -> web.Response:
    doer = require_doer(request)
    sim = sim_of(request)
    return _repo_list(request, [r for r in sim.state.repos.values()
                                if r.owner_id == doer.id or doer.id in r.collaborators])


def _owner_repos(request: web.Request, owner: User) -> web.Response:
    """listUserRepos (routers/api/v1/user/repo.go): the owner's repositories by id, private ones only for a
    signed-in doer; counted and paged before those the doer may not read are left out."""
    sim = sim_of(request)
    doer = doer_of(request)
    owned = sorted((r for r in sim.state.repos.values() if r.owner_id == owner.id and (doer or not r.private)),
                   key=lambda r: r.id)
    chunk, headers = paginate(request, owned)
    shown = [r for r in chunk if (doer is not None and doer.is_admin) or sim.perms.access(r, doer) >= Access.READ]
    return json_response([sim.ser.repo(r, sim.perms.access(r, doer)) for r in shown], headers=headers)


async def list_org_repos(request: web.Request) -> web.Response:
    org = sim_of(request).state.user_by_name(request.match_info["org"])
    if org is None or not org.is_org:
        raise not_found()
    return _owner_repos(request, org)


async def list_owner_repos(request: web.Request) -> web.Response:
    """GET /users/{username}/repos: an organisation's name works too (GetUserByName finds both)."""
    owner = sim_of(request).state.user_by_name(request.match_info["username"])
    if owner is None:
        raise not_found()
    return _owner_repos(request, owner)


async def get_repo(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    return json_response(sim_of(request).ser.repo(repo, access))


async def edit_repo(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    require_access(access, Access.ADMIN)
    body = await read_json(request)
    for key in EDITABLE_REPO_FIELDS:
        if key in body and body[key] is not None:
            repo.settings[key] = body[key]
    if isinstance(body.get("description"), str):
        repo.description = body["description"]
    if isinstance(body.get("private"), bool):
        repo.private = body["private"]
    if isinstance(body.get("default_branch"), str) and body["default_branch"]:
        repo.default_branch = body["default_branch"]
        await sim_of(request).git(repo).git("symbolic-ref", "HEAD", f"refs/heads/{repo.default_branch}")
    if isinstance(body.get("internal_tracker"), dict):
        deps = body["internal_tracker"].get("enable_issue_dependencies")
        if isinstance(deps, bool):
            repo.settings["enable_issue_dependencies"] = deps
    if any(key != "archived" and value is not None for key, value in body.items()):
        # UpdateRepository writes the whole row (xorm bumps updated_unix); archiving alone does not:
        # SetArchiveRepoState updates is_archived with NoAutoTime() (models/repo/update.go).
        repo.updated_at = utcnow()
    return json_response(sim_of(request).ser.repo(repo, access))


async def delete_repo(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    require_access(access, Access.OWNER, "Given user is not owner of organization.")
    del sim.state.repos[repo.id]
    for fork in sim.state.forks_of(repo):  # DeleteRepository: the forks stand alone from then on
        fork.fork_of = None
    for issue in repo.issues.values():
        sim.state.issues_by_id.pop(issue.id, None)
    shutil.rmtree(repo.path, ignore_errors=True)
    return empty(204)


# --- collaborators ---
async def list_collaborators(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    users = [sim.state.users[uid] for uid in sorted(repo.collaborators)]
    chunk, headers = paginate(request, users)
    return json_response([sim.ser.user(u) for u in chunk], headers=headers)


def _collaborator(request: web.Request) -> User:
    user = sim_of(request).state.user_by_name(request.match_info["collaborator"])
    if user is None:
        raise ApiError(422, "user does not exist")
    return user


async def check_collaborator(request: web.Request) -> web.Response:
    repo, _ = repo_ctx(request)
    user = _collaborator(request)
    return empty(204 if user.id in repo.collaborators else 404)


async def add_collaborator(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    require_access(access, Access.ADMIN)
    user = _collaborator(request)
    body = await read_json(request)
    perm = str_field(body, "permission", "write") or "write"
    if perm not in ("read", "write", "admin"):
        raise ApiError(422, "permission must be read, write or admin")
    repo.collaborators[user.id] = ACCESS_BY_NAME[perm]
    return empty(204)


async def delete_collaborator(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    require_access(access, Access.ADMIN)
    user = _collaborator(request)
    repo.collaborators.pop(user.id, None)
    return empty(204)


async def collaborator_permission(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    doer = require_doer(request)
    user = sim.state.user_by_name(request.match_info["collaborator"])
    if user is None:
        raise not_found()
    if access < Access.ADMIN and doer.id != user.id:
        raise forbidden("Only admins can query all permissions, repo admins can query all repo permissions, "
                        "collaborators can query only their own")
    return json_response(sim.ser.permission(user, sim.perms.access(repo, user)))


def add_routes(app: web.Application, p: str) -> None:
    r = app.router
    r.add_get(f"{p}/version", version)
    r.add_get(f"{p}/user", current_user)
    r.add_get(f"{p}/users/{{username}}", get_user)
    r.add_get(f"{p}/users/{{username}}/repos", list_owner_repos)
    r.add_post(f"{p}/admin/users", admin_create_user)
    r.add_get(f"{p}/admin/users", admin_list_users)
    r.add_post(f"{p}/admin/users/{{username}}/repos", admin_create_repo)
    r.add_post(f"{p}/users/{{username}}/tokens", create_token)
    r.add_get(f"{p}/users/{{username}}/tokens", list_tokens)
    r.add_post(f"{p}/orgs", create_org)
    r.add_get(f"{p}/orgs/{{org}}", get_org)
    r.add_post(f"{p}/orgs/{{org}}/repos", create_org_repo)
    r.add_get(f"{p}/orgs/{{org}}/repos", list_org_repos)
    r.add_post(f"{p}/user/repos", create_user_repo)
    r.add_get(f"{p}/user/repos", list_user_repos)
    repo = f"{p}/repos/{{owner}}/{{repo}}"
    r.add_get(repo, get_repo)
    r.add_patch(repo, edit_repo)
    r.add_delete(repo, delete_repo)
    r.add_get(f"{repo}/collaborators", list_collaborators)
    r.add_get(f"{repo}/collaborators/{{collaborator}}", check_collaborator)
    r.add_put(f"{repo}/collaborators/{{collaborator}}", add_collaborator)
    r.add_delete(f"{repo}/collaborators/{{collaborator}}", delete_collaborator)
    r.add_get(f"{repo}/collaborators/{{collaborator}}/permission", collaborator_permission)
