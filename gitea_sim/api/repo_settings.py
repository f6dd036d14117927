"""Labels, branch protections, branches and commits of a repository (hooks: api/hooks.py)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from ..core import RefUpdate
from ..gitrepo import ZERO_SHA
from ..model import Access, Label, Protection, Repo, utcnow
from ..web import (
    ApiError,
    bool_field,
    doer_of,
    empty,
    forbidden,
    int_field,
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

COLOR_RE = re.compile(r"^#?[0-9a-fA-F]{6}$")
PROTECTION_FIELDS = (
    "enable_push", "enable_push_whitelist", "push_whitelist_usernames", "push_whitelist_teams",
    "push_whitelist_deploy_keys", "enable_force_push", "enable_force_push_allowlist",
    "force_push_allowlist_usernames", "force_push_allowlist_teams", "force_push_allowlist_deploy_keys",
    "enable_merge_whitelist", "merge_whitelist_usernames", "merge_whitelist_teams", "enable_status_check",
    "status_check_contexts", "required_approvals", "enable_approvals_whitelist", "approvals_whitelist_username",
    "approvals_whitelist_teams", "block_on_rejected_reviews", "block_on_official_review_requests",
    "block_on_outdated_branch", "dismiss_stale_approvals", "ignore_stale_approvals", "require_signed_commits",
    "protected_file_patterns", "unprotected_file_patterns", "block_admin_merge_override", "priority",
)
PROTECTION_LISTS = ("push_whitelist_usernames", "push_whitelist_teams", "force_push_allowlist_usernames",
                    "force_push_allowlist_teams", "merge_whitelist_usernames", "merge_whitelist_teams",
                    "status_check_contexts", "approvals_whitelist_username", "approvals_whitelist_teams")
USERNAME_LISTS = ("push_whitelist_usernames", "force_push_allowlist_usernames", "merge_whitelist_usernames",
                  "approvals_whitelist_username")


# --- labels ---
def _label(repo: Repo, request: web.Request) -> Label:
    label = repo.labels.get(int_param(request, "id"))
    if label is None:
        raise not_found()
    return label


async def list_labels(request: web.Request) -> web.Response:
    repo, _ = repo_ctx(request)
    chunk, headers = paginate(request, sorted(repo.labels.values(), key=lambda lab: lab.name))
    return json_response([sim_of(request).ser.label(repo, lab) for lab in chunk], headers=headers)


async def create_label(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    require_access(access, Access.WRITE)
    body = await read_json(request)
    name, color = str_field(body, "name"), str_field(body, "color")
    if not name or not COLOR_RE.match(color):
        raise ApiError(422, "[Color]: invalid color / [Name]: Required")
    label = Label(id=sim.state.next_id("label"), name=name, color=color.lstrip("#").lower(),
                  description=str_field(body, "description"), exclusive=bool_field(body, "exclusive"),
                  is_archived=bool_field(body, "is_archived"))
    repo.labels[label.id] = label
    return json_response(sim.ser.label(repo, label), 201)


async def get_label(request: web.Request) -> web.Response:
    repo, _ = repo_ctx(request)
    return json_response(sim_of(request).ser.label(repo, _label(repo, request)))


async def edit_label(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    require_access(access, Access.WRITE)
    label = _label(repo, request)
    body = await read_json(request)
    if "color" in body:
        color = str_field(body, "color")
        if not COLOR_RE.match(color):
            raise ApiError(422, "[Color]: invalid color")
        label.color = color.lstrip("#").lower()
    label.name = str_field(body, "name", label.name) or label.name
    label.description = str_field(body, "description", label.description)
    label.exclusive = bool_field(body, "exclusive", label.exclusive)
    label.is_archived = bool_field(body, "is_archived", label.is_archived)
    return json_response(sim_of(request).ser.label(repo, label))


async def delete_label(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    require_access(access, Access.WRITE)
    label = _label(repo, request)
    del repo.labels[label.id]
    for issue in repo.issues.values():
        if label.id in issue.label_ids:
            issue.label_ids.remove(label.id)
    return empty(204)


# --- branch protections ---
def _protection_opts(request: web.Request, repo: Repo, body: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    sim = sim_of(request)
    opts = dict(base)
    for key in PROTECTION_FIELDS:
        if key not in body or body[key] is None:
            continue
        if key in PROTECTION_LISTS:
            opts[key] = list_field(body, key)
        elif key in ("required_approvals", "priority"):
            number = int_field(body, key)
            if number is None:
                raise ApiError(422, f"{key}: must be an integer")
            opts[key] = number
        elif key in ("protected_file_patterns", "unprotected_file_patterns"):
            opts[key] = str_field(body, key)
        else:
            opts[key] = bool_field(body, key)
    for key in USERNAME_LISTS:
        for name in opts.get(key) or []:
            user = sim.state.user_by_name(str(name))
            if user is None:
                raise ApiError(422, f"user does not exist [uid: 0, name: {name}]")
    for key in ("status_check_contexts", *USERNAME_LISTS):
        if not isinstance(opts.get(key, []), list):
            raise ApiError(422, f"{key}: must be an array")
    return opts


def _find_protection(repo: Repo, name: str) -> Protection:
    for p in repo.protections:
        if p.rule_name == name:
            return p
    raise not_found()


async def list_protections(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    require_access(access, Access.ADMIN)
    return json_response([sim_of(request).ser.protection(p) for p in repo.protections])


async def create_protection(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    require_access(access, Access.ADMIN)
    body = await read_json(request)
    name = str_field(body, "rule_name") or str_field(body, "branch_name")
    if not name:
        raise ApiError(422, "rule_name is required")
    if any(p.rule_name == name for p in repo.protections):
        raise forbidden("Branch protection already exist")
    prot = Protection(rule_name=name, opts=_protection_opts(request, repo, body, {}))
    # CreateBranchProtection passes the request's priority on; UpdateProtectBranch gives a new rule whose
    # priority is unset (0) the highest priority so far plus one (glob rules match in ascending priority,
    # i.e. in creation order unless reordered).
    if not int(prot.opts.get("priority", 0) or 0):
        prot.opts["priority"] = max((int(p.opts.get("priority", 0) or 0) for p in repo.protections), default=0) + 1
    repo.protections.append(prot)
    return json_response(sim_of(request).ser.protection(prot), 201)


async def get_protection(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    require_access(access, Access.ADMIN)
    prot = _find_protection(repo, request.match_info["name"])
    return json_response(sim_of(request).ser.protection(prot))


async def edit_protection(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    require_access(access, Access.ADMIN)
    prot = _find_protection(repo, request.match_info["name"])
    body = await read_json(request)
    prot.opts = _protection_opts(request, repo, body, prot.opts)
    prot.updated_at = utcnow()
    return json_response(sim_of(request).ser.protection(prot))


async def delete_protection(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    require_access(access, Access.ADMIN)
    prot = _find_protection(repo, request.match_info["name"])
    repo.protections.remove(prot)
    return empty(204)


# --- branches ---
async def _branch_json(request: web.Request, repo: Repo, name: str, sha: str) -> dict[str, Any]:
    sim = sim_of(request)
    info = await sim.git(repo).commit(sha)
    assert info is not None
    prot = sim.perms.protection_for(repo, name)
    doer = doer_of(request)
    access = sim.perms.access(repo, doer)
    can_push = access >= Access.WRITE and (prot is None or (doer is not None and sim.perms.can_push(repo, prot, doer)))
    can_merge = doer is not None and sim.perms.can_merge(repo, name, doer)
    return sim.ser.branch(repo, name, info, prot, can_push, can_merge)


async def list_branches(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    branches = sorted((await sim.git(repo).branches()).items())
    chunk, headers = paginate(request, branches)
    return json_response([await _branch_json(request, repo, n, s) for n, s in chunk], headers=headers)


async def get_branch(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    name = request.match_info["branch"]
    sha = await sim.git(repo).branch_sha(name)
    if sha is None:
        raise not_found("branch does not exist")
    return json_response(await _branch_json(request, repo, name, sha))


async def create_branch(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    require_access(access, Access.WRITE)
    doer = require_doer(request)
    body = await read_json(request)
    name = str_field(body, "new_branch_name")
    old = str_field(body, "old_ref_name") or str_field(body, "old_branch_name") or repo.default_branch
    if not name:
        raise ApiError(422, "[BranchName]: Required")
    git = sim.git(repo)
    sha = await git.branch_sha(old) or await git.resolve(old)
    if sha is None:
        raise not_found("The old branch does not exist")
    if await git.branch_sha(name) is not None:
        raise ApiError(409, "The branch already exists.")
    if not await git.update_ref(f"refs/heads/{name}", sha, ZERO_SHA):
        raise ApiError(409, "The branch already exists.")
    await sim.on_push(repo, doer, [RefUpdate(ZERO_SHA, sha, f"refs/heads/{name}")])
    return json_response(await _branch_json(request, repo, name, sha), 201)


async def delete_branch(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    require_access(access, Access.WRITE)
    doer = require_doer(request)
    name = request.match_info["branch"]
    if name == repo.default_branch:
        raise forbidden("can not delete default branch")
    if sim.perms.protection_for(repo, name) is not None:
        raise forbidden("branch protected")
    git = sim.git(repo)
    sha = await git.branch_sha(name)
    if sha is None or not await git.delete_ref(f"refs/heads/{name}", sha):
        raise not_found("branch does not exist")
    await sim.on_push(repo, doer, [RefUpdate(sha, ZERO_SHA, f"refs/heads/{name}")])
    return empty(204)


# --- commits ---
async def get_commit(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    info = await sim.git(repo).commit(request.match_info["sha"])
    if info is None:
        raise not_found()
    return json_response(sim.ser.commit(repo, info))


async def list_commits(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    git = sim.git(repo)
    ref = request.query.get("sha") or repo.default_branch
    sha = await git.branch_sha(ref) or await git.resolve(ref)
    if sha is None:
        if repo.settings.get("_empty"):
            raise ApiError(409, "Git Repository is empty.")
        raise not_found()
    shas = await git.rev_list(sha)
    chunk, headers = paginate(request, shas)
    commits = [await git.commit(s) for s in chunk]
    return json_response([sim.ser.commit(repo, c) for c in commits if c is not None], headers=headers)


def add_routes(app: web.Application, p: str) -> None:
    r = app.router
    repo = f"{p}/repos/{{owner}}/{{repo}}"
    r.add_get(f"{repo}/labels", list_labels)
    r.add_post(f"{repo}/labels", create_label)
    r.add_get(f"{repo}/labels/{{id}}", get_label)
    r.add_patch(f"{repo}/labels/{{id}}", edit_label)
    r.add_delete(f"{repo}/labels/{{id}}", delete_label)
    r.add_get(f"{repo}/branch_protections", list_protections)
    r.add_post(f"{repo}/branch_protections", create_protection)
    r.add_get(f"{repo}/branch_protections/{{name}}", get_protection)
    r.add_patch(f"{repo}/branch_protections/{{name}}", edit_protection)
    r.add_delete(f"{repo}/branch_protections/{{name}}", delete_protection)
    r.add_get(f"{repo}/branches", list_branches)
    r.add_post(f"{repo}/branches", create_branch)
    r.add_get(f"{repo}/branches/{{branch:.+}}", get_branch)
    r.add_delete(f"{repo}/branches/{{branch:.+}}", delete_branch)
    r.add_get(f"{repo}/git/commits/{{sha}}", get_commit)
    r.add_get(f"{repo}/commits", list_commits)
