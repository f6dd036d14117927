"""Every JSON answer of every implemented endpoint validates against Gitea 1.25.4's own OpenAPI spec (plus
the few newer routes the simulator serves when acting as a newer Gitea, tests/contract/gitea/gitea-swagger-newer.json).

The walk calls every API route the simulator serves and validates each response against the schema the spec
gives for that path, method and status code. The check is stricter than the spec in one way: objects may not
carry fields the spec's definition does not list (the spec never says `additionalProperties`, but a field the
simulator invents would be a field a bot could wrongly rely on). It is looser in one documented way:
`NULLABLE` below.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gitea_sim.app import create_app
from gitea_sim.testing import SimHandle
from tests.conftest import SWAGGER, SWAGGER_NEWER

from .conftest import Team

SPEC: dict[str, Any] = json.loads(SWAGGER.read_text())
SPEC["paths"].update(json.loads(SWAGGER_NEWER.read_text())["paths"])
API = "/api/v1"

# Go marshals a nil pointer or nil slice as JSON null, and go-swagger does not mark such fields x-nullable.
# Real Gitea sends null for exactly these (see e.g. payloads/gitea-pull_request-closed-unmerged.json:
# milestone, assignee, assignees, requested_reviewers, merged_at, merge_commit_sha, merged_by, closed_at,
# due_date; payloads/gitea-issue_comment-on-issue-created.json: issue.pull_request; push commits'
# verification), so the spec alone would reject genuine Gitea answers. Only these (definition, field) pairs
# may be null.
NULLABLE: dict[str, set[str]] = {
    "PullRequest": {
        "milestone",
        "assignee",
        "assignees",
        "requested_reviewers",
        "requested_reviewers_teams",
        "merged_at",
        "merge_commit_sha",
        "merged_by",
        "due_date",
        "closed_at",
    },
    "Issue": {"milestone", "assignee", "assignees", "closed_at", "due_date", "pull_request"},
    "PullRequestMeta": {"merged_at"},
    "Commit": {"author", "committer"},
    "PayloadCommit": {"verification"},
    "PayloadCommitVerification": {"signer"},
    "PullReview": {"team"},
    "CombinedStatus": {"statuses"},  # convert.ToCombinedStatus leaves Statuses nil when there are none
    # modules/structs/repo_file.go: "`encoding` is populated when `type` is `file`, otherwise null" (and so on)
    "ContentsResponse": {"encoding", "content", "target", "submodule_git_url", "download_url", "html_url",
                         "git_url"},
    "FileLinksResponse": {"git", "html"},
}
# convert.ToCombinedStatus also leaves State "" when a commit has no status; the spec's enum has no "".
EMPTY_STRING_ALLOWED = {"CombinedStatus": {"state"}}

# Fields real Gitea emits that its spec leaves out (checked against the captures in tests/contract/gitea/payloads).
NOT_IN_SPEC: dict[str, dict[str, str]] = {
    "User": {"username": "UserName is `swagger:ignore` in modules/structs/user.go; every capture has it"},
}

# Answers the spec does not declare for that path and method, which real Gitea gives (with the reason).
UNDECLARED_BUT_REAL = {
    ("POST", "/repos/{owner}/{repo}/pulls/{index}/merge", 201): "scheduled merge (FACTS.md: not in the spec)",
    ("POST", "/repos/{owner}/{repo}/pulls/{index}/merge", 422): "binding error on Do (Gitea's form validation)",
    ("POST", "/repos/{owner}/{repo}/pulls/{index}/merge", 500): "ErrDependenciesLeft / diverging ff-only",
    ("DELETE", "/repos/{owner}/{repo}/issues/{index}/dependencies", 201): "RemoveIssueDependency writes 201",
}


def _definitions() -> dict[str, Any]:
    defs: dict[str, Any] = json.loads(json.dumps(SPEC["definitions"]))
    for name, schema in defs.items():
        props = schema.get("properties")
        if schema.get("type") == "object" and props and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for field_name in NOT_IN_SPEC.get(name, {}):
            props[field_name] = {}
        for field_name in EMPTY_STRING_ALLOWED.get(name, ()):
            props[field_name] = {"anyOf": [{"enum": [""]}, props[field_name]]}
        for field_name in NULLABLE.get(name, ()):
            props[field_name] = {"anyOf": [{"type": "null"}, props[field_name]]}
    return defs


DEFINITIONS = _definitions()


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + r"\Z")


TEMPLATES = sorted(SPEC["paths"], key=lambda t: (t.count("{"), -len(t)))
REGEXES = [(t, _template_regex(t)) for t in TEMPLATES]


def template_of(path: str) -> str:
    for template, regex in REGEXES:
        if regex.match(path):
            return template
    raise AssertionError(f"{path} is not a path of the Gitea API")


def response_schema(method: str, template: str, status: int) -> tuple[bool, dict[str, Any] | None]:
    """(declared, schema) for that answer."""
    op = SPEC["paths"][template][method.lower()]
    resp = op["responses"].get(str(status))
    if resp is None:
        return False, None
    if "$ref" in resp:
        resp = SPEC["responses"][resp["$ref"].split("/")[-1]]
    schema = resp.get("schema")
    return True, (json.loads(json.dumps(schema)) if schema else None)


def validate(method: str, path: str, status: int, body: Any) -> str:
    template = template_of(path.split("?")[0].removeprefix(API))
    declared, schema = response_schema(method, template, status)
    if not declared and status in (401, 403):
        # Gitea's route middlewares (reqToken, reqAdmin, reqRepoWriter...) answer 401/403 on any route they
        # guard; the spec declares those only where the handler itself returns them.
        assert isinstance(body, dict) and "message" in body
        return template
    if not declared:
        assert (method, template, status) in UNDECLARED_BUT_REAL, f"{method} {template}: {status} not in the spec"
        return template
    if schema is not None and schema.get("type") == "file":
        assert body is None, f"{method} {path} -> {status}: the spec says raw bytes, the answer is JSON"
    elif schema is not None:
        assert body is not None, f"{method} {path} -> {status}: the spec gives a schema, the answer has no JSON"
        root = {"definitions": DEFINITIONS, **schema}
        errors = sorted(jsonschema.Draft4Validator(root).iter_errors(body), key=lambda e: list(e.path))
        assert not errors, f"{method} {path} -> {status}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors[:5]
        )
    elif 200 <= status < 300:
        assert body is None, f"{method} {path} -> {status}: the spec says empty"
    else:
        assert isinstance(body, dict) and "message" in body, f"{method} {path} -> {status}: {body!r}"
    return template


def implemented_routes(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(tmp_path / "routes", "unused")
    routes = set()
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource else ""
        if route.method in ("HEAD", "*") or not canonical.startswith(API + "/"):
            continue
        routes.add((route.method, canonical.removeprefix(API)))
    return routes


def test_every_implemented_route_is_a_gitea_route(tmp_path: Path) -> None:
    missing = [(m, p) for m, p in implemented_routes(tmp_path) if m.lower() not in SPEC["paths"].get(p, {})]
    assert missing == []


class Recorder:
    """Wraps SimHandle.request: validates every API answer and notes which route it exercised."""

    def __init__(self, g: SimHandle) -> None:
        self.g = g
        self.inner = g.request
        self.hit: set[tuple[str, str]] = set()
        g.request = self.request  # type: ignore[method-assign]

    async def request(self, method: str, path: str, **kw: Any) -> tuple[int, Any, dict[str, str]]:
        status, body, headers = await self.inner(method, path, **kw)
        if path.startswith(API + "/"):
            template = validate(method, path, status, body)
            if 200 <= status < 300:
                self.hit.add((method, template))
        return status, body, headers


async def walk(g: SimHandle, team: Team) -> None:
    """Call every route the simulator implements (success paths, plus common error answers)."""
    repo, r = team.repo, f"/repos/{team.repo}"
    w = team.writer
    await g.api("GET", "/version")
    await g.api("GET", "/user", token=w.token)
    await g.api("GET", "/users/bob")
    await g.api("GET", "/admin/users")
    await g.api("GET", "/users/bob/tokens", expect=401, token=w.token)
    status, _, _ = await g.request("GET", f"{API}/users/bob/tokens", basic=("bob", w.password))
    assert status == 200
    org = await g.create_org(team.owner, "acme")
    await g.api("GET", f"/orgs/{org}")
    crew = await g.api(
        "POST", f"/orgs/{org}/teams", token=team.owner.token, json={"name": "crew", "permission": "write"}
    )
    await g.api("GET", f"/orgs/{org}/teams", token=team.owner.token)
    await g.api("PUT", f"/teams/{crew['id']}/members/bob", token=team.owner.token)
    await g.api("GET", f"/teams/{crew['id']}/members/bob", token=team.owner.token)
    await g.api("GET", f"/teams/{crew['id']}/members/{team.reader.login}", token=team.owner.token, expect=404)
    await g.api("DELETE", f"/teams/{crew['id']}/members/bob", token=team.owner.token)
    await g.api("POST", f"/orgs/{org}/teams", token=w.token, json={"name": "nope"}, expect=403)
    await g.api("POST", f"/orgs/{org}/repos", token=team.owner.token, json={"name": "tool", "auto_init": True})
    await g.api("GET", f"/orgs/{org}/repos")
    await g.api("POST", "/admin/users/bob/repos", json={"name": "bobs"})
    await g.create_repo(w, "own")
    await g.api("GET", "/user/repos", token=w.token)
    await g.api("GET", r)
    await g.api("PATCH", r, json={"allow_manual_merge": True, "description": "demo"})
    await g.api("GET", f"{r}/collaborators")
    await g.api("GET", f"{r}/collaborators/bob")
    await g.api("GET", f"{r}/collaborators/nobody", expect=422)
    await g.api("GET", f"{r}/collaborators/bob/permission")
    await g.api("GET", f"{r}/collaborators/alice/permission", token=w.token, expect=403)
    await g.create_user("carol")
    await g.api("PUT", f"{r}/collaborators/carol", json={"permission": "read"})
    await g.api("DELETE", f"{r}/collaborators/carol")
    # labels
    label = await g.create_label(repo, "queue")
    await g.api("GET", f"{r}/labels")
    await g.api("GET", f"{r}/labels/{label['id']}")
    await g.api("PATCH", f"{r}/labels/{label['id']}", json={"description": "queued"})
    extra = await g.create_label(repo, "tmp")
    await g.api("DELETE", f"{r}/labels/{extra['id']}")
    await g.api("POST", f"{r}/labels", json={"name": "bad", "color": "nope"}, expect=422)
    # protections
    await g.protect(repo, "main", enable_push=True, enable_status_check=True, status_check_contexts=["ci/*"])
    await g.api("GET", f"{r}/branch_protections")
    await g.api("GET", f"{r}/branch_protections/main")
    await g.api("PATCH", f"{r}/branch_protections/main", json={"required_approvals": 0})
    await g.protect(repo, "tmp/*")
    await g.api("DELETE", f"{r}/branch_protections/tmp%2F%2A")
    await g.api("GET", f"{r}/branch_protections/none", expect=404)
    # hooks
    hook = await g.add_hook(repo, "http://127.0.0.1:9/hook", "s")
    await g.api("GET", f"{r}/hooks")
    await g.api("GET", f"{r}/hooks/{hook['id']}")
    await g.api("PATCH", f"{r}/hooks/{hook['id']}", json={"active": False})
    await g.api("POST", f"{r}/hooks/{hook['id']}/tests", expect=204)
    await g.api("DELETE", f"{r}/hooks/{hook['id']}")
    await g.api("GET", f"{r}/hooks", token=w.token, expect=403)
    org_hook = await g.api("POST", f"/orgs/{org}/hooks", token=team.owner.token, json={
        "type": "gitea", "config": {"url": "http://127.0.0.1:9/hook", "content_type": "json"}, "events": ["push"]})
    await g.api("GET", f"/orgs/{org}/hooks", token=team.owner.token)
    await g.api("GET", f"/orgs/{org}/hooks/{org_hook['id']}", token=team.owner.token)
    await g.api("PATCH", f"/orgs/{org}/hooks/{org_hook['id']}", token=team.owner.token, json={"active": True})
    await g.api("DELETE", f"/orgs/{org}/hooks/{org_hook['id']}", token=team.owner.token)
    await g.api("GET", f"/orgs/{org}/hooks", token=w.token, expect=403)
    # topics and the repository search
    await g.api("PUT", f"{r}/topics", json={"topics": ["queue", "Bots "]})
    await g.api("PUT", f"{r}/topics/merge")
    await g.api("DELETE", f"{r}/topics/bots")
    await g.api("GET", f"{r}/topics")
    await g.api("PUT", f"{r}/topics", json={"topics": ["no spaces"]}, expect=422)
    await g.api("GET", "/repos/search", params={"q": "queue", "topic": "true"})
    await g.api("GET", "/repos/search", params={"mode": "nope"}, expect=422)
    feed = {"type": "pulls", "state": "all", "since": "2000-01-01T00:00:00Z"}
    await g.api("GET", "/repos/issues/search", params=feed)
    await g.api("GET", "/repos/issues/search", params={"owner": "nobody-here"}, expect=400)
    await g.api("GET", "/users/alice/repos")
    # contents, from the real git repository
    await g.api("GET", f"{r}/contents")
    await g.api("GET", f"{r}/contents/README.md", params={"ref": "main"})
    await g.api("GET", f"{r}/contents/missing.md", expect=404)
    status, _, _ = await g.request("GET", f"{API}{r}/raw/README.md", token=w.token)
    assert status == 200
    # branches and commits
    sha = await g.push_commit(repo, w, "feat", {"f.txt": "1\n"}, base="main")
    await g.api("GET", f"{r}/branches")
    await g.api("GET", f"{r}/branches/feat")
    await g.api("POST", f"{r}/branches", json={"new_branch_name": "copy", "old_ref_name": "feat"}, token=w.token)
    await g.api("DELETE", f"{r}/branches/copy", token=w.token)
    await g.api("DELETE", f"{r}/branches/main", token=w.token, expect=403)
    await g.api("GET", f"{r}/git/commits/{sha}")
    await g.api("GET", f"{r}/commits", params={"sha": "feat", "limit": "1"})
    # statuses
    await g.api("POST", f"{r}/statuses/{sha}", json={"state": "pending", "context": "ci/test"}, token=w.token)
    await g.api("POST", f"{r}/statuses/{sha}", json={"state": "success", "context": "ci/test"}, token=w.token)
    await g.api("POST", f"{r}/statuses/{sha}", json={"state": "success"}, token=team.reader.token, expect=403)
    await g.api("GET", f"{r}/statuses/{sha}")
    await g.api("GET", f"{r}/commits/feat/statuses")
    await g.api("GET", f"{r}/commits/{sha}/status")
    await g.api("GET", f"{r}/commits/main/status")
    # pull requests (the head gets a new commit without statuses, so the scheduled merge waits)
    await g.push_commit(repo, w, "feat", {"g.txt": "1\n"})
    pr = await g.create_pr(repo, w, "feat", title="Feature")
    n = pr["number"]
    await g.wait_idle()
    await g.api("GET", f"{r}/pulls", params={"state": "all", "limit": "1"})
    await g.api("GET", f"{r}/pulls/{n}")
    await g.api("GET", f"{r}/pulls/main/feat")
    await g.api("PATCH", f"{r}/pulls/{n}", json={"body": "why"}, token=w.token)
    await g.api("GET", f"{r}/pulls/{n}/commits")
    await g.api("POST", f"{r}/pulls/{n}/reviews", json={"event": "APPROVED"}, token=team.owner.token)
    await g.api("GET", f"{r}/pulls/{n}/reviews")
    await g.api("POST", f"{r}/pulls/{n}/update", token=w.token)
    await g.api("GET", f"{r}/pulls/{n}/merge", expect=404)
    await g.api(
        "POST",
        f"{r}/pulls/{n}/merge",
        json={"Do": "merge", "merge_when_checks_succeed": True},
        token=w.token,
        expect=201,
    )
    await g.api("DELETE", f"{r}/pulls/{n}/merge", token=w.token, expect=204)
    await g.api("POST", f"{r}/pulls/{n}/merge", json={"Do": "merge"}, token=team.reader.token, expect=405)
    await g.api("POST", f"{r}/pulls/{n}/merge", json={"Do": "nope"}, token=w.token, expect=422)
    # forks, and a pull request from one (head.repo is the fork, with its parent)
    fork = await g.fork(repo, team.reader)
    await g.api("GET", f"{r}/forks")
    await g.api("POST", f"{r}/forks", json={}, token=team.reader.token, expect=409)
    await g.api("GET", f"/repos/{fork}")
    await g.push_commit(fork, team.reader, "forked", {"k.txt": "1\n"}, base="main")
    forked = await g.create_pr(repo, team.reader, f"{team.reader.login}:forked", title="From a fork")
    await g.api("GET", f"{r}/pulls/{forked['number']}")
    await g.api("PATCH", f"{r}/pulls/{forked['number']}", json={"allow_maintainer_edit": True}, token=team.reader.token)
    # issues, comments, reactions, labels, dependencies, timeline
    issue = await g.api("POST", f"{r}/issues", json={"title": "bug"}, token=team.reader.token)
    await g.api("GET", f"{r}/issues", params={"state": "all"})
    await g.api("GET", f"{r}/issues/{n}")
    await g.api("PATCH", f"{r}/issues/{issue['number']}", json={"body": "details"}, token=team.reader.token)
    comment = await g.comment(repo, n, team.reader, "/merge")
    await g.api("GET", f"{r}/issues/{n}/comments")
    await g.api("GET", f"{r}/issues/comments", params={"since": "2020-01-01T00:00:00Z", "limit": 10})
    await g.api("GET", f"{r}/issues/comments/{comment['id']}")
    await g.api(
        "PATCH", f"{r}/issues/comments/{comment['id']}", json={"body": "/merge please"}, token=team.reader.token
    )
    await g.api("POST", f"{r}/issues/comments/{comment['id']}/reactions", json={"content": "eyes"}, token=w.token)
    await g.api("POST", f"{r}/issues/comments/{comment['id']}/reactions", json={"content": "eyes"}, token=w.token)
    await g.api("GET", f"{r}/issues/comments/{comment['id']}/reactions")
    await g.api("DELETE", f"{r}/issues/comments/{comment['id']}/reactions", json={"content": "eyes"}, token=w.token)
    await g.api("POST", f"{r}/issues/{n}/reactions", json={"content": "+1"}, token=w.token)
    await g.api("GET", f"{r}/issues/{n}/reactions")
    await g.api("DELETE", f"{r}/issues/{n}/reactions", json={"content": "+1"}, token=w.token)
    other = await g.comment(repo, n, w, "to delete")
    await g.api("DELETE", f"{r}/issues/comments/{other['id']}", token=w.token)
    await g.api("POST", f"{r}/issues/{n}/labels", json={"labels": [label["id"]]}, token=w.token)
    await g.api("POST", f"{r}/issues/{n}/labels", json={"labels": ["queue"]}, token=team.reader.token, expect=403)
    await g.api("GET", f"{r}/issues/{n}/labels")
    await g.api("PUT", f"{r}/issues/{n}/labels", json={"labels": ["queue"]}, token=w.token)
    await g.api("DELETE", f"{r}/issues/{n}/labels/{label['id']}", token=w.token)
    await g.api("DELETE", f"{r}/issues/{n}/labels", token=w.token)
    await g.set_status(repo, (await g.get_pr(repo, n))["head"]["sha"], "success", "ci/test")
    dep = {"owner": "alice", "repo": "demo", "index": issue["number"]}
    await g.api("POST", f"{r}/issues/{n}/dependencies", json=dep, token=w.token)
    await g.api("GET", f"{r}/issues/{n}/dependencies")
    await g.api("POST", f"{r}/pulls/{n}/merge", json={"Do": "merge"}, token=w.token, expect=500)
    await g.api("DELETE", f"{r}/issues/{n}/dependencies", json=dep, token=w.token)
    await g.api("GET", f"{r}/issues/{n}/timeline", params={"page": "1", "limit": "50"})
    await g.wait_idle()
    if not (await g.get_pr(repo, n))["merged"]:
        await g.api("POST", f"{r}/pulls/{n}/merge", json={"Do": "merge"}, token=w.token)
    await g.api("GET", f"{r}/pulls/{n}/merge")
    await g.api("GET", f"{r}/pulls/{n}")
    await g.api("GET", f"{r}/pulls/99", expect=404)
    await g.set_ci(repo, "false", context="ci/red")  # an Actions run that fails, re-run as a newer Gitea does
    red = await g.push_commit(repo, w, "red", {"red.txt": "1"}, base="main")
    await g.wait_idle()
    runs = await g.api("GET", f"{r}/actions/runs", params={"head_sha": red})
    run_id = runs["workflow_runs"][0]["id"]
    await g.api("GET", f"{r}/actions/runs/{run_id}")
    await g.api("POST", f"{r}/actions/runs/{run_id}/rerun-failed-jobs", token=w.token, expect=404)  # 1.25
    await g.features(actions_rerun=True)
    await g.api("POST", f"{r}/actions/runs/{run_id}/rerun-failed-jobs", token=w.token)
    await g.wait_idle()
    await g.api("DELETE", f"/repos/{org}/tool", token=team.owner.token)


async def test_every_route_answers_in_the_shape_of_the_spec(gitea: SimHandle, team: Team, tmp_path: Path) -> None:
    recorder = Recorder(gitea)
    await walk(gitea, team)
    routes = implemented_routes(tmp_path)
    not_exercised = sorted(routes - recorder.hit)
    assert not_exercised == []


@pytest.mark.parametrize("path", ["/repos/alice/demo/pulls/1", "/repos/alice/demo/issues/1/timeline"])
def test_templates_resolve(path: str) -> None:
    assert template_of(path).startswith("/repos/{owner}/{repo}/")


@pytest.mark.parametrize("body", [{"id": 1, "name": "x", "color": "aa", "invented": 1}, {"id": "1"}])
def test_the_validator_rejects_invented_fields_and_wrong_types(body: dict[str, Any]) -> None:
    with pytest.raises(AssertionError):
        validate("GET", "/api/v1/repos/a/b/labels/1", 200, body)
