"""Issues, comments, reactions, issue labels, dependencies and the timeline (shared by PRs, as in Gitea)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ..model import Access, Comment, Issue, Reaction, Repo, User, utcnow
from ..web import (
    ApiError,
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

ALLOWED_REACTIONS = ("+1", "-1", "laugh", "hooray", "confused", "heart", "rocket", "eyes")


def issue_of(repo: Repo, request: web.Request) -> Issue:
    issue = repo.issues.get(int_param(request, "index"))
    if issue is None:
        raise not_found()
    return issue


def comment_of(request: web.Request, repo: Repo) -> tuple[Issue, Comment]:
    sim = sim_of(request)
    comment = sim.state.comments_by_id.get(int_param(request, "id"))
    if comment is None:
        raise not_found()
    issue = sim.state.issues_by_id[comment.issue_id]
    if issue.repo_id != repo.id:
        raise not_found()
    return issue, comment


def _comment_event(issue: Issue) -> str:
    return "pull_request_comment" if issue.is_pull else "issue_comment"


def _branch(issue: Issue) -> str | None:
    return issue.pr.base_branch if issue.pr is not None else None


# --- issues ---
async def get_issue(request: web.Request) -> web.Response:
    repo, _ = repo_ctx(request)
    return json_response(sim_of(request).ser.issue(repo, issue_of(repo, request)))


async def list_issues(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    state = request.query.get("state", "open")
    kind = request.query.get("type", "")
    issues = [i for i in repo.issues.values() if (state == "all" or i.state == state)
              and (kind == "" or (kind == "pulls") == i.is_pull)]
    issues.sort(key=lambda i: i.id, reverse=True)
    chunk, headers = paginate(request, issues)
    return json_response([sim.ser.issue(repo, i) for i in chunk], headers=headers)


async def create_issue(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    doer = require_doer(request)
    body = await read_json(request)
    title = str_field(body, "title")
    if not title:
        raise ApiError(422, "[Title]: Required")
    issue = sim.pulls.new_issue(repo, doer, title, str_field(body, "body"), is_pull=False)
    return json_response(sim.ser.issue(repo, issue), 201)


async def edit_issue(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    doer = require_doer(request)
    issue = issue_of(repo, request)
    if access < Access.WRITE and doer.id != issue.poster_id:
        raise forbidden("user should have a permission to write to a repo")
    body = await read_json(request)
    if str_field(body, "title"):
        issue.title = str_field(body, "title")
    if isinstance(body.get("body"), str):
        issue.body = body["body"]
    state = body.get("state")
    if state in ("open", "closed"):
        if issue.pr is not None and issue.pr.merged:
            raise ApiError(412, "cannot change state of this pull request, it was already merged")
        sim.pulls.set_state(repo, issue, doer, str(state))
    issue.updated_at = utcnow()
    return json_response(sim.ser.issue(repo, issue), 201)


# --- comments ---
async def list_comments(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    issue = issue_of(repo, request)
    data = [sim.ser.comment(repo, issue, c) for c in issue.comments]
    return json_response(data, headers={"X-Total-Count": str(len(data))})


async def list_repo_comments(request: web.Request) -> web.Response:
    """Every comment in the repository (Gitea's ListRepoIssueComments): oldest first, paginated,
    `since`/`before` filter on the update time."""
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    since = _query_time(request, "since")
    before = _query_time(request, "before")
    found = [(issue, c) for issue in repo.issues.values() for c in issue.comments
             if (since is None or c.updated_at >= since) and (before is None or c.updated_at < before)]
    found.sort(key=lambda pair: (pair[1].created_at, pair[1].id))
    chunk, headers = paginate(request, found)
    return json_response([sim.ser.comment(repo, issue, c) for issue, c in chunk], headers=headers)


async def search_issues(request: web.Request) -> web.Response:
    """GET /repos/issues/search (routers/api/v1/repo/issue.go, ``SearchIssues``): issues and pulls across the
    repositories the doer may read — with ``owner``, only those that user or organisation owns (``OwnerID``,
    ``Collaborate: false``), else also every public one (``AllPublic``). ``state`` open (default), closed or
    all; ``type`` issues or pulls; ``since``/``before`` filter on the issue's update time (``UpdatedAfterUnix``,
    inclusive, and ``UpdatedBeforeUnix``), at second resolution as Gitea stores it; sorted by creation, newest
    first (``SortByCreatedDesc``); ``limit`` defaults to 20 (``setting.UI.IssuePagingNum``), at most 50."""
    sim = sim_of(request)
    doer = doer_of(request)
    q = request.query
    owner_name = q.get("owner", "")
    owner = sim.state.user_by_name(owner_name) if owner_name else None
    if owner_name and owner is None:
        raise ApiError(400, "Owner not found")
    state = q.get("state", "")
    kind = q.get("type", "")
    since = _query_time(request, "since")
    before = _query_time(request, "before")
    found: list[tuple[Repo, Issue]] = []
    for repo in sim.state.repos.values():
        if owner is not None and repo.owner_id != owner.id:
            continue
        if sim.perms.access(repo, doer) < Access.READ:
            continue
        for issue in repo.issues.values():
            if state != "all" and issue.state != (state if state == "closed" else "open"):
                continue
            if kind in ("pulls", "issues") and issue.is_pull != (kind == "pulls"):
                continue
            updated = issue.updated_at.replace(microsecond=0)
            if since is not None and updated < since.replace(microsecond=0):
                continue
            if before is not None and updated > before.replace(microsecond=0):
                continue
            found.append((repo, issue))
    found.sort(key=lambda pair: (pair[1].created_at, pair[1].id), reverse=True)
    if "limit" not in q or q.get("limit") in ("", "0"):
        request = request.clone(rel_url=request.rel_url.update_query(limit=20))
    chunk, headers = paginate(request, found)
    return json_response([sim.ser.issue(repo, issue) for repo, issue in chunk], headers=headers)


def _query_time(request: web.Request, key: str) -> datetime | None:
    raw = request.query.get(key)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(422, f"invalid {key}: {raw}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def create_comment(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    doer = require_doer(request)
    issue = issue_of(repo, request)
    body = await read_json(request)
    text = str_field(body, "body")
    if not text:
        raise ApiError(422, "[Body]: Required")
    comment = Comment(id=sim.state.next_id("comment"), issue_id=issue.id, user_id=doer.id, body=text)
    issue.comments.append(comment)
    issue.updated_at = utcnow()
    sim.state.comments_by_id[comment.id] = comment
    sim.webhooks.emit(repo, _comment_event(issue), sim.payloads.comment("created", repo, issue, comment, doer),
                      branch=_branch(issue))
    return json_response(sim.ser.comment(repo, issue, comment), 201)


async def get_comment(request: web.Request) -> web.Response:
    repo, _ = repo_ctx(request)
    issue, comment = comment_of(request, repo)
    return json_response(sim_of(request).ser.comment(repo, issue, comment))


def _may_edit(access: Access, doer: User, comment: Comment) -> None:
    if doer.id != comment.user_id and access < Access.WRITE:
        raise forbidden("user should have a permission to edit this comment")


async def edit_comment(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    doer = require_doer(request)
    issue, comment = comment_of(request, repo)
    _may_edit(access, doer, comment)
    body = await read_json(request)
    text = str_field(body, "body")
    if text != comment.body:
        old = comment.body
        comment.body, comment.updated_at = text, utcnow()
        sim.webhooks.emit(repo, _comment_event(issue),
                          sim.payloads.comment("edited", repo, issue, comment, doer, changes={"body": {"from": old}}),
                          branch=_branch(issue))
    return json_response(sim.ser.comment(repo, issue, comment))


async def delete_comment(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    doer = require_doer(request)
    issue, comment = comment_of(request, repo)
    _may_edit(access, doer, comment)
    issue.comments.remove(comment)
    del sim.state.comments_by_id[comment.id]
    sim.webhooks.emit(repo, _comment_event(issue), sim.payloads.comment("deleted", repo, issue, comment, doer),
                      branch=_branch(issue))
    return empty(204)


# --- reactions ---
def _reactions_of(request: web.Request, repo: Repo) -> list[Reaction]:
    if "id" in request.match_info:
        return comment_of(request, repo)[1].reactions
    return issue_of(repo, request).reactions


async def list_reactions(request: web.Request) -> web.Response:
    repo, _ = repo_ctx(request)
    reactions = _reactions_of(request, repo)
    chunk, headers = paginate(request, reactions)
    return json_response([sim_of(request).ser.reaction(r) for r in chunk], headers=headers)


async def post_reaction(request: web.Request) -> web.Response:
    repo, _ = repo_ctx(request)
    doer = require_doer(request)
    reactions = _reactions_of(request, repo)
    content = str_field(await read_json(request), "content")
    if content not in ALLOWED_REACTIONS:
        raise forbidden(f"'{content}' is not an allowed reaction")
    for r in reactions:
        if r.user_id == doer.id and r.content == content:
            return json_response(sim_of(request).ser.reaction(r), 200)
    reaction = Reaction(user_id=doer.id, content=content)
    reactions.append(reaction)
    return json_response(sim_of(request).ser.reaction(reaction), 201)


async def delete_reaction(request: web.Request) -> web.Response:
    repo, _ = repo_ctx(request)
    doer = require_doer(request)
    reactions = _reactions_of(request, repo)
    content = str_field(await read_json(request), "content")
    reactions[:] = [r for r in reactions if not (r.user_id == doer.id and r.content == content)]
    return empty(200)


# --- labels on issues and PRs ---
def _resolve_labels(repo: Repo, values: list[Any]) -> list[int]:
    ids: list[int] = []
    by_name = {lab.name: lab.id for lab in repo.labels.values()}
    for v in values:
        if isinstance(v, int) and v in repo.labels:
            ids.append(v)
        elif isinstance(v, str) and v in by_name:
            ids.append(by_name[v])
        elif isinstance(v, str) and v.isdigit() and int(v) in repo.labels:
            ids.append(int(v))
    return ids


def _labels_changed(request: web.Request, repo: Repo, issue: Issue, doer: User, before: list[int],
                    action: str = "label_updated") -> None:
    sim = sim_of(request)
    for lid in issue.label_ids:
        if lid not in before:
            sim.add_event(issue.id, "label", doer, body="1", label_id=lid)
    for lid in before:
        if lid not in issue.label_ids:
            sim.add_event(issue.id, "label", doer, body="", label_id=lid)
    issue.updated_at = utcnow()
    if issue.pr is not None and before != issue.label_ids:
        sim.webhooks.emit(repo, "pull_request_label",
                          sim.payloads.pull_request(action, repo, issue, doer), branch=_branch(issue))


async def get_issue_labels(request: web.Request) -> web.Response:
    repo, _ = repo_ctx(request)
    issue = issue_of(repo, request)
    return json_response(sim_of(request).ser.labels_of(repo, issue))


async def add_issue_labels(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    require_access(access, Access.WRITE)
    doer = require_doer(request)
    issue = issue_of(repo, request)
    before = list(issue.label_ids)
    for lid in _resolve_labels(repo, list_field(await read_json(request), "labels")):
        if lid not in issue.label_ids:
            issue.label_ids.append(lid)
    _labels_changed(request, repo, issue, doer, before)
    return json_response(sim_of(request).ser.labels_of(repo, issue))


async def replace_issue_labels(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    require_access(access, Access.WRITE)
    doer = require_doer(request)
    issue = issue_of(repo, request)
    before = list(issue.label_ids)
    issue.label_ids = _resolve_labels(repo, list_field(await read_json(request), "labels"))
    _labels_changed(request, repo, issue, doer, before)
    return json_response(sim_of(request).ser.labels_of(repo, issue))


async def remove_issue_label(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    require_access(access, Access.WRITE)
    doer = require_doer(request)
    issue = issue_of(repo, request)
    lid = int_param(request, "id")
    if lid not in repo.labels:
        raise ApiError(422, f"label does not exist [label_id: {lid}]")
    before = list(issue.label_ids)
    if lid in issue.label_ids:
        issue.label_ids.remove(lid)
    _labels_changed(request, repo, issue, doer, before)
    return empty(204)


async def clear_issue_labels(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    require_access(access, Access.WRITE)
    doer = require_doer(request)
    issue = issue_of(repo, request)
    before = list(issue.label_ids)
    issue.label_ids = []
    _labels_changed(request, repo, issue, doer, before, action="label_cleared")
    return empty(204)


# --- dependencies ---
async def list_dependencies(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    issue = issue_of(repo, request)
    deps = [sim.state.issues_by_id[i] for i in issue.depends_on if i in sim.state.issues_by_id]
    chunk, headers = paginate(request, deps)
    return json_response([sim.ser.issue(sim.state.repos[d.repo_id], d) for d in chunk], headers=headers)


async def _dependency_target(request: web.Request, repo: Repo) -> Issue:
    sim = sim_of(request)
    body = await read_json(request)
    owner = str_field(body, "owner") or sim.state.users[repo.owner_id].login
    name = str_field(body, "repo") or repo.name
    target_repo = sim.state.repo_by_name(owner, name)
    index = int_field(body, "index")
    if target_repo is None or index is None or index not in target_repo.issues:
        raise not_found("the issue does not exist")
    doer = require_doer(request)
    if sim.perms.access(target_repo, doer) < Access.READ:
        raise not_found("the issue does not exist")
    return target_repo.issues[index]


async def add_dependency(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    require_access(access, Access.WRITE)
    doer = require_doer(request)
    if not repo.settings["enable_issue_dependencies"]:
        raise not_found("dependencies are disabled")
    issue = issue_of(repo, request)
    dep = await _dependency_target(request, repo)
    if dep.id == issue.id:
        raise ApiError(422, "cannot add an issue as its own dependency")
    if dep.id not in issue.depends_on:
        issue.depends_on.append(dep.id)
        sim.add_event(issue.id, "add_dependency", doer, dependent_issue_id=dep.id)
        sim.add_event(dep.id, "add_dependency", doer, dependent_issue_id=issue.id)
    return json_response(sim.ser.issue(sim.state.repos[dep.repo_id], dep), 201)


async def remove_dependency(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    require_access(access, Access.WRITE)
    doer = require_doer(request)
    issue = issue_of(repo, request)
    dep = await _dependency_target(request, repo)
    if dep.id in issue.depends_on:
        issue.depends_on.remove(dep.id)
        sim.add_event(issue.id, "remove_dependency", doer, dependent_issue_id=dep.id)
        sim.add_event(dep.id, "remove_dependency", doer, dependent_issue_id=issue.id)
    # RemoveIssueDependency answers 201 (routers/api/v1/repo/issue_dependency.go: createIssueDependency
    # writes ctx.JSON(http.StatusCreated, ...) for both directions), although the spec documents 200.
    return json_response(sim.ser.issue(sim.state.repos[dep.repo_id], dep), 201)


# --- timeline ---
async def timeline(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    issue = issue_of(repo, request)
    entries: list[tuple[int, dict[str, Any]]] = [(c.id, sim.ser.timeline_comment(repo, issue, c))
                                                 for c in issue.comments]
    entries += [(e.id, sim.ser.timeline_event(repo, issue, e)) for e in issue.events]
    entries.sort(key=lambda pair: pair[0])
    chunk, headers = paginate(request, [data for _, data in entries])
    return json_response(chunk, headers=headers)


def add_search_route(app: web.Application, p: str) -> None:
    """Registered before ``/repos/{owner}/{repo}``, which would take ``issues/search`` for a repository."""
    app.router.add_get(f"{p}/repos/issues/search", search_issues)


def add_routes(app: web.Application, p: str) -> None:
    r = app.router
    repo = f"{p}/repos/{{owner}}/{{repo}}"
    r.add_get(f"{repo}/issues", list_issues)
    r.add_post(f"{repo}/issues", create_issue)
    r.add_get(f"{repo}/issues/comments", list_repo_comments)
    r.add_get(f"{repo}/issues/comments/{{id:\\d+}}", get_comment)
    r.add_patch(f"{repo}/issues/comments/{{id:\\d+}}", edit_comment)
    r.add_delete(f"{repo}/issues/comments/{{id:\\d+}}", delete_comment)
    r.add_get(f"{repo}/issues/comments/{{id:\\d+}}/reactions", list_reactions)
    r.add_post(f"{repo}/issues/comments/{{id:\\d+}}/reactions", post_reaction)
    r.add_delete(f"{repo}/issues/comments/{{id:\\d+}}/reactions", delete_reaction)
    r.add_get(f"{repo}/issues/{{index:\\d+}}", get_issue)
    r.add_patch(f"{repo}/issues/{{index:\\d+}}", edit_issue)
    r.add_get(f"{repo}/issues/{{index:\\d+}}/comments", list_comments)
    r.add_post(f"{repo}/issues/{{index:\\d+}}/comments", create_comment)
    r.add_get(f"{repo}/issues/{{index:\\d+}}/reactions", list_reactions)
    r.add_post(f"{repo}/issues/{{index:\\d+}}/reactions", post_reaction)
    r.add_delete(f"{repo}/issues/{{index:\\d+}}/reactions", delete_reaction)
    r.add_get(f"{repo}/issues/{{index:\\d+}}/labels", get_issue_labels)
    r.add_post(f"{repo}/issues/{{index:\\d+}}/labels", add_issue_labels)
    r.add_put(f"{repo}/issues/{{index:\\d+}}/labels", replace_issue_labels)
    r.add_delete(f"{repo}/issues/{{index:\\d+}}/labels", clear_issue_labels)
    r.add_delete(f"{repo}/issues/{{index:\\d+}}/labels/{{id:\\d+}}", remove_issue_label)
    r.add_get(f"{repo}/issues/{{index:\\d+}}/dependencies", list_dependencies)
    r.add_post(f"{repo}/issues/{{index:\\d+}}/dependencies", add_dependency)
    r.add_delete(f"{repo}/issues/{{index:\\d+}}/dependencies", remove_dependency)
    r.add_get(f"{repo}/issues/{{index:\\d+}}/timeline", timeline)
