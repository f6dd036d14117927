"""Webhooks of a repository and of an organisation, and test deliveries: routers/api/v1/repo/hook.go,
routers/api/v1/org/hook.go and routers/api/v1/utils/hook.go (the add/edit logic both share) in Gitea 1.25.

An organisation's hooks get the events of every repository the organisation owns (services/webhook's
PrepareWebhooks adds the owner's hooks to the repository's own): see Webhooks.hooks_of."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from ..model import Access, Hook, Repo, User, utcnow
from ..web import (
    ApiError,
    bool_field,
    empty,
    forbidden,
    int_param,
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

HOOK_TYPES = ("gitea", "gogs", "forgejo", "slack", "discord", "dingtalk", "telegram", "msteams", "feishu",
              "matrix", "wechatwork", "packagist")
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


def _apply_config(hook: Hook, config: dict[str, Any]) -> None:
    if "url" in config:
        hook.url = str(config["url"])
    if "content_type" in config:
        hook.content_type = str(config["content_type"])
    if "secret" in config:
        hook.secret = str(config["secret"])
    if "http_method" in config:
        hook.http_method = str(config["http_method"]).lower()


async def _new_hook(request: web.Request) -> Hook:
    """addHook: a known type, `url` and `content_type` in the config, `push` when no events are named."""
    body = await read_json(request)
    config = body.get("config")
    hook_type = str_field(body, "type")
    if hook_type not in HOOK_TYPES:
        raise ApiError(422, "Invalid hook type")
    if not isinstance(config, dict) or not config.get("url") or \
            config.get("content_type") not in ("json", "form"):
        raise ApiError(422, "Missing config option: url / content_type")
    events = [str(e) for e in list_field(body, "events")] or ["push"]
    hook = Hook(id=sim_of(request).state.next_id("hook"), url="", content_type="json", secret="", events=events,
                active=bool_field(body, "active", False), branch_filter=str_field(body, "branch_filter", "*") or "*",
                authorization_header=str_field(body, "authorization_header"), type=hook_type)
    _apply_config(hook, config)
    return hook


async def _edit(request: web.Request, hook: Hook) -> web.Response:
    body = await read_json(request)
    if isinstance(body.get("config"), dict):
        _apply_config(hook, body["config"])
    if "events" in body:
        hook.events = [str(e) for e in list_field(body, "events")]
    hook.active = bool_field(body, "active", hook.active)
    hook.branch_filter = str_field(body, "branch_filter", hook.branch_filter)
    hook.authorization_header = str_field(body, "authorization_header", hook.authorization_header)
    hook.updated_at = utcnow()
    return json_response(sim_of(request).ser.hook(hook))


# --- repository hooks (reqToken, reqAdmin) ---
def _repo_admin(request: web.Request) -> Repo:
    repo, access = repo_ctx(request)
    require_doer(request)
    require_access(access, Access.ADMIN)
    return repo


def _repo_hook(repo: Repo, request: web.Request) -> Hook:
    hook = repo.hooks.get(int_param(request, "id"))
    if hook is None:
        raise not_found()
    return hook


async def list_hooks(request: web.Request) -> web.Response:
    repo = _repo_admin(request)
    chunk, headers = paginate(request, list(repo.hooks.values()))
    return json_response([sim_of(request).ser.hook(h) for h in chunk], headers=headers)


async def create_hook(request: web.Request) -> web.Response:
    repo = _repo_admin(request)
    hook = await _new_hook(request)
    repo.hooks[hook.id] = hook
    return json_response(sim_of(request).ser.hook(hook), 201)


async def get_hook(request: web.Request) -> web.Response:
    repo = _repo_admin(request)
    return json_response(sim_of(request).ser.hook(_repo_hook(repo, request)))


async def edit_hook(request: web.Request) -> web.Response:
    repo = _repo_admin(request)
    return await _edit(request, _repo_hook(repo, request))


async def delete_hook(request: web.Request) -> web.Response:
    repo = _repo_admin(request)
    del repo.hooks[_repo_hook(repo, request).id]
    return empty(204)


async def test_hook(request: web.Request) -> web.Response:
    """TestHook: a push payload for the commit `ref` names (the default branch's head when none), before =
    after = that commit, `ref` as given or refs/heads/<default branch>; 204 once it is queued."""
    sim = sim_of(request)
    repo = _repo_admin(request)
    doer = require_doer(request)
    if repo.settings.get("_empty"):
        raise ApiError(500, "no open git repo")  # ReferencesGitRepo opens no repository for an empty one
    hook = _repo_hook(repo, request)
    git = sim.git(repo)
    given = request.query.get("ref", "").strip()
    sha = await git.branch_sha(given) if given else None
    if sha is None and given:
        sha = await git.resolve(f"refs/tags/{given}")
    if sha is None and FULL_SHA.match(given):
        sha = await git.resolve(given)
        if sha is None:
            raise not_found("GetCommit")
    if sha is None:  # getRefNameLegacy falls back to the default branch for a ref it cannot place
        sha = await git.branch_sha(repo.default_branch)
    commit = await git.commit(sha) if sha else None
    if commit is None:
        raise not_found("unable to find a git ref")
    ref = given or f"refs/heads/{repo.default_branch}"
    payload = sim.payloads.test_push(repo, ref, commit, doer)
    sim.webhooks.test(repo, hook, payload, ref.removeprefix("refs/heads/"))
    return empty(204)


# --- organisation hooks (orgAssignment, reqToken, reqOrgOwnership) ---
def _org_owner(request: web.Request) -> User:
    org = sim_of(request).state.user_by_name(request.match_info["org"])
    if org is None or not org.is_org:
        raise not_found()
    doer = require_doer(request)
    if not doer.is_admin and doer.id not in org.org_owners:
        raise forbidden("Must be an organization owner")
    return org


def _org_hook(org: User, request: web.Request) -> Hook:
    hook = org.hooks.get(int_param(request, "id"))
    if hook is None:
        raise not_found()
    return hook


async def list_org_hooks(request: web.Request) -> web.Response:
    """ListOwnerHooks: paged, with the total count (no Link header)."""
    org = _org_owner(request)
    chunk, headers = paginate(request, list(org.hooks.values()))
    headers.pop("Link", None)
    return json_response([sim_of(request).ser.hook(h) for h in chunk], headers=headers)


async def create_org_hook(request: web.Request) -> web.Response:
    org = _org_owner(request)
    hook = await _new_hook(request)
    org.hooks[hook.id] = hook
    return json_response(sim_of(request).ser.hook(hook), 201)


async def get_org_hook(request: web.Request) -> web.Response:
    org = _org_owner(request)
    return json_response(sim_of(request).ser.hook(_org_hook(org, request)))


async def edit_org_hook(request: web.Request) -> web.Response:
    org = _org_owner(request)
    return await _edit(request, _org_hook(org, request))


async def delete_org_hook(request: web.Request) -> web.Response:
    org = _org_owner(request)
    del org.hooks[_org_hook(org, request).id]
    return empty(204)


def add_routes(app: web.Application, p: str) -> None:
    r = app.router
    repo = f"{p}/repos/{{owner}}/{{repo}}"
    r.add_get(f"{repo}/hooks", list_hooks)
    r.add_post(f"{repo}/hooks", create_hook)
    r.add_get(f"{repo}/hooks/{{id}}", get_hook)
    r.add_patch(f"{repo}/hooks/{{id}}", edit_hook)
    r.add_delete(f"{repo}/hooks/{{id}}", delete_hook)
    r.add_post(f"{repo}/hooks/{{id}}/tests", test_hook)
    org = f"{p}/orgs/{{org}}"
    r.add_get(f"{org}/hooks", list_org_hooks)
    r.add_post(f"{org}/hooks", create_org_hook)
    r.add_get(f"{org}/hooks/{{id}}", get_org_hook)
    r.add_patch(f"{org}/hooks/{{id}}", edit_org_hook)
    r.add_delete(f"{org}/hooks/{{id}}", delete_org_hook)

