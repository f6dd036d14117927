"""Pull requests: list, create, edit, merge (every Do style), scheduled merge, update, reviews, commits."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..forks import head_repo_for
from ..model import Access, Issue, Repo, Review, User, utcnow
from ..pulls import MERGE_STYLES, MergeRequest
from ..serialize import tss
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
    require_doer,
    sim_of,
    str_field,
)


def pull_of(repo: Repo, request: web.Request) -> Issue:
    issue = repo.issues.get(int_param(request, "index"))
    if issue is None or issue.pr is None:
        raise not_found()
    return issue


async def list_pulls(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    state = request.query.get("state", "open")
    pulls = [i for i in repo.pulls() if state == "all" or i.state == state]
    label_ids = {int(x) for x in request.query.getall("labels", []) if x.isdigit()}
    if label_ids:
        pulls = [i for i in pulls if label_ids <= set(i.label_ids)]
    sort = request.query.get("sort", "")
    if sort == "oldest":
        pulls.sort(key=lambda i: i.id)
    elif sort in ("recentupdate", "leastupdate"):
        pulls.sort(key=lambda i: (i.updated_at, i.id), reverse=sort == "recentupdate")
    else:
        pulls.sort(key=lambda i: i.id, reverse=True)
    chunk, headers = paginate(request, pulls)
    return json_response([sim.ser.pull(repo, i, access) for i in chunk], headers=headers)


async def create_pull(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    doer = require_doer(request)
    body = await read_json(request)
    head, base, title = str_field(body, "head"), str_field(body, "base"), str_field(body, "title")
    if not head or not base or not title:
        raise ApiError(422, "[Head]/[Base]/[Title]: Required")
    head_repo = repo
    if ":" in head:
        head_owner, head = head.split(":", 1)
        head_repo = head_repo_for(sim, repo, doer, head_owner)
    labels = [int(x) for x in list_field(body, "labels") if not isinstance(x, bool) and str(x).isdigit()]
    if labels and access < Access.WRITE:
        labels = []
    issue = await sim.pulls.create(repo, doer, head, base, title, str_field(body, "body"), labels, head_repo)
    return json_response(sim.ser.pull(repo, issue, access), 201)


async def get_pull(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    return json_response(sim_of(request).ser.pull(repo, pull_of(repo, request), access))


async def get_pull_by_branches(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    base, head = request.match_info["base"], request.match_info["head"]
    for issue in sorted(repo.pulls(), key=lambda i: i.id, reverse=True):
        pr = issue.pr
        assert pr is not None
        if pr.base_branch == base and pr.head_branch == head and pr.head_repo_id is None:
            return json_response(sim_of(request).ser.pull(repo, issue, access))
    raise not_found()


async def edit_pull(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    doer = require_doer(request)
    issue = pull_of(repo, request)
    pr = issue.pr
    assert pr is not None
    if access < Access.WRITE and doer.id != issue.poster_id:
        raise forbidden("user should have a permission to write to a repo")
    body = await read_json(request)
    changes: dict[str, Any] = {}
    if "title" in body and str_field(body, "title") and body["title"] != issue.title:
        changes["title"] = {"from": issue.title}
        issue.title = str_field(body, "title")
    if "body" in body and body["body"] is not None and body["body"] != issue.body:
        changes["body"] = {"from": issue.body}
        issue.body = str_field(body, "body")
    if "allow_maintainer_edit" in body:
        if doer.id != issue.poster_id:  # pull_service.SetAllowEdits: the poster's switch
            raise forbidden("SetAllowEdits: user not allowed to do this action")
        pr.allow_maintainer_edit = bool_field(body, "allow_maintainer_edit")
    new_base = str_field(body, "base")
    if new_base and new_base != pr.base_branch and not pr.merged:
        if await sim.git(repo).branch_sha(new_base) is None:
            raise not_found(f"new base '{new_base}' not exist")
        if issue.state != "open":
            raise ApiError(422, "issue is closed")
        if not sim.pulls.change_target(repo, issue, doer, new_base):
            raise ApiError(409, f"pull request already exists for these targets [head_branch: {pr.head_branch}, "
                                f"base_branch: {new_base}]")
    if changes:
        issue.updated_at = utcnow()
        sim.webhooks.emit(repo, "pull_request",
                          sim.payloads.pull_request("edited", repo, issue, doer, changes=changes),
                          branch=pr.base_branch)
    state = body.get("state")
    if state in ("open", "closed") and state != issue.state:
        if pr.merged:
            raise ApiError(412, "cannot change state of this pull request, it was already merged")
        sim.pulls.set_state(repo, issue, doer, str(state))
    return json_response(sim.ser.pull(repo, issue, access), 201)


# --- merge ---
def merge_request(body: dict[str, Any]) -> MergeRequest:
    """MergePullRequestForm, in both spellings (newer builds accept snake_case)."""
    def pick(*keys: str) -> str:
        for key in keys:
            if key in body and body[key] is not None:
                return str_field(body, key)
        return ""

    style = pick("Do", "do")
    if style not in MERGE_STYLES:
        raise ApiError(422, "[Do]: Required / In(merge,rebase,rebase-merge,squash,fast-forward-only,"
                            "manually-merged)")
    return MergeRequest(style=style, head_commit_id=pick("head_commit_id"),
                        title=pick("MergeTitleField", "merge_title_field"),
                        message=pick("MergeMessageField", "merge_message_field"),
                        merge_commit_id=pick("MergeCommitID", "merge_commit_id"),
                        force_merge=bool_field(body, "force_merge"),
                        delete_branch=bool_field(body, "delete_branch_after_merge"),
                        when_checks_succeed=bool_field(body, "merge_when_checks_succeed"))


async def merge_pull(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    doer = require_doer(request)
    issue = pull_of(repo, request)
    req = merge_request(await read_json(request))
    status = await sim.pulls.merge(repo, issue, doer, req)
    return empty(status)


async def is_merged(request: web.Request) -> web.Response:
    repo, _ = repo_ctx(request)
    issue = pull_of(repo, request)
    assert issue.pr is not None
    if issue.pr.merged:
        return empty(204)
    raise not_found()


async def cancel_scheduled_merge(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    doer = require_doer(request)
    issue = pull_of(repo, request)
    pr = issue.pr
    assert pr is not None
    if pr.scheduled is None:
        raise not_found()
    if pr.scheduled.doer_id != doer.id and access < Access.ADMIN:
        raise forbidden("user has no permission to cancel the scheduled auto merge")
    sim.pulls.cancel_scheduled(issue, doer)
    return empty(204)


async def update_pull(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    doer = require_doer(request)
    issue = pull_of(repo, request)
    pr = issue.pr
    assert pr is not None
    if pr.merged or issue.state != "open":
        raise ApiError(422, "")
    rebase = request.query.get("style") == "rebase"
    if not sim.pulls.can_update(repo, issue, doer, rebase):
        return empty(403)
    await sim.pulls.update(repo, issue, doer, rebase)
    return empty(200)


async def pull_commits(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    issue = pull_of(repo, request)
    pr = issue.pr
    assert pr is not None
    git = sim.git(repo)
    base = pr.merge_base if pr.merged and pr.merge_base else pr.base_branch
    shas = await git.rev_list(f"{base}..{pr.head_sha}")
    chunk, headers = paginate(request, shas)
    commits = [await git.commit(s) for s in chunk]
    return json_response([sim.ser.commit(repo, c) for c in commits if c is not None], headers=headers)


# --- reviews ---
REVIEW_EVENTS = {"APPROVED": "pull_request_review_approved", "REQUEST_CHANGES": "pull_request_review_rejected",
                 "COMMENT": "pull_request_review_comment"}


def review_json(request: web.Request, repo: Repo, issue: Issue, r: Review) -> dict[str, Any]:
    sim = sim_of(request)
    html = sim.ser.issue_html(repo, issue)
    return {"id": r.id, "user": sim.ser.user_id(r.user_id), "team": None, "state": r.state, "body": r.body,
            "commit_id": r.commit_id, "stale": r.stale, "official": r.official, "dismissed": r.dismissed,
            "comments_count": 0, "submitted_at": tss(r.submitted_at), "updated_at": tss(r.submitted_at),
            "html_url": f"{html}#issuecomment-{r.id}", "pull_request_url": html}


async def list_reviews(request: web.Request) -> web.Response:
    repo, _ = repo_ctx(request)
    issue = pull_of(repo, request)
    assert issue.pr is not None
    chunk, headers = paginate(request, issue.pr.reviews)
    return json_response([review_json(request, repo, issue, r) for r in chunk], headers=headers)


def _official(request: web.Request, repo: Repo, issue: Issue, user: User) -> bool:
    sim = sim_of(request)
    assert issue.pr is not None
    prot = sim.perms.protection_for(repo, issue.pr.base_branch)
    if prot is not None and prot.flag("enable_approvals_whitelist"):
        return user.login.lower() in {n.lower() for n in prot.names("approvals_whitelist_username")}
    return sim.perms.access(repo, user) >= Access.WRITE


async def create_review(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    doer = require_doer(request)
    issue = pull_of(repo, request)
    pr = issue.pr
    assert pr is not None
    body = await read_json(request)
    event = str_field(body, "event", "COMMENT").upper() or "COMMENT"
    if event not in REVIEW_EVENTS:
        raise ApiError(422, "unsupported review event")
    if event in ("APPROVED", "REQUEST_CHANGES") and doer.id == issue.poster_id:
        verb = "approve" if event == "APPROVED" else "reject"
        raise ApiError(422, f"{verb} your own pull is not allowed")
    # preparePullReviewType: a COMMENT needs a body or line comments, REQUEST_CHANGES a body.
    has_body = bool(str_field(body, "body").strip())
    if event == "COMMENT" and not has_body and not list_field(body, "comments"):
        raise ApiError(422, "review event COMMENT requires a body or a comment")
    if event == "REQUEST_CHANGES" and not has_body:
        raise ApiError(422, "review event REQUEST_CHANGES requires a body")
    review = Review(id=sim.state.next_id("comment"), user_id=doer.id, state=event, body=str_field(body, "body"),
                    commit_id=str_field(body, "commit_id") or pr.head_sha,
                    official=_official(request, repo, issue, doer))
    review.stale = review.commit_id != pr.head_sha
    pr.reviews.append(review)
    sim.add_event(issue.id, "review", doer, body=review.body)
    payload = sim.payloads.pull_request("reviewed", repo, issue, doer, commit_id=pr.head_sha,
                                        review={"type": REVIEW_EVENTS[event], "content": review.body})
    sim.webhooks.emit(repo, REVIEW_EVENTS[event], payload, branch=pr.base_branch)
    if event == "APPROVED":  # the automerge notifier retries a scheduled merge on each approval
        sim.pulls.start_auto_merge(repo, issue)
    return json_response(review_json(request, repo, issue, review))


def add_routes(app: web.Application, p: str) -> None:
    r = app.router
    repo = f"{p}/repos/{{owner}}/{{repo}}"
    r.add_get(f"{repo}/pulls", list_pulls)
    r.add_post(f"{repo}/pulls", create_pull)
    r.add_get(f"{repo}/pulls/{{index:\\d+}}", get_pull)
    r.add_patch(f"{repo}/pulls/{{index:\\d+}}", edit_pull)
    r.add_get(f"{repo}/pulls/{{index:\\d+}}/merge", is_merged)
    r.add_post(f"{repo}/pulls/{{index:\\d+}}/merge", merge_pull)
    r.add_delete(f"{repo}/pulls/{{index:\\d+}}/merge", cancel_scheduled_merge)
    r.add_post(f"{repo}/pulls/{{index:\\d+}}/update", update_pull)
    r.add_get(f"{repo}/pulls/{{index:\\d+}}/commits", pull_commits)
    r.add_get(f"{repo}/pulls/{{index:\\d+}}/reviews", list_reviews)
    r.add_post(f"{repo}/pulls/{{index:\\d+}}/reviews", create_review)
    r.add_get(f"{repo}/pulls/{{base}}/{{head:.+}}", get_pull_by_branches)


