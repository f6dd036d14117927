"""``POST /_sim/seed``: a test helper that fills the simulator with many repositories and pull requests at once.

SEEDING, NOT GITEA: no Gitea route does this and it is no part of the Gitea contract the simulator keeps. It
writes records directly (as a database fixture would), so a benchmark can stand up a thousand repositories
holding ten thousand open PRs in seconds instead of pushing each through git. A seeded repository has **no git
content**: its API records (settings, collaborators, topics, hooks, issues, pull requests, comments, the
timeline) behave as any other's, but git and branch routes on it fail. Its PRs' head and base SHAs are made
up. Everything seeded is dated ``updated_at`` (default: an hour ago), so it reads as history, not as news.

Body::

    {"owner": "org", "org": true, "repos": 100, "prefix": "repo", "pulls": [10, 10, ...] | 10,
     "collaborators": {"merge-bot": "admin"}, "topics": ["merge-queue"], "updated_at": "2026-01-01T00:00:00Z"}

``owner`` is created when missing (an organisation with ``org``, owned by the caller). Answers the full names
of the repositories made and the number of PRs.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from aiohttp import web

from ..model import ACCESS_BY_NAME, DEFAULT_REPO_SETTINGS, Issue, PullRequest, Repo, User, utcnow
from ..web import ApiError, json_response, read_json, require_doer, sim_of

MAX_REPOS = 5000
MAX_PULLS = 100_000


def _sha(*parts: object) -> str:
    return hashlib.sha1("/".join(str(p) for p in parts).encode()).hexdigest()


def _owner(request: web.Request, name: str, org: bool) -> User:
    sim = sim_of(request)
    found = sim.state.user_by_name(name)
    if found is not None:
        return found
    user = sim.create_user(name, f"{name.lower()}@seed.sim.invalid", is_org=org)
    if org:
        user.org_owners.add(require_doer(request).id)
    return user


async def seed(request: web.Request) -> web.Response:
    doer = require_doer(request)
    if not doer.is_admin:
        raise ApiError(403, "the /_sim/ API needs a site admin token")
    sim = sim_of(request)
    body = await read_json(request)
    owner_name, prefix = str(body.get("owner") or ""), str(body.get("prefix") or "repo")
    count = body.get("repos", 0)
    if not owner_name or not isinstance(count, int) or not 0 < count <= MAX_REPOS:
        raise ApiError(422, f"owner and repos (1..{MAX_REPOS}) are required")
    pulls = body.get("pulls", 0)
    per_repo = pulls if isinstance(pulls, list) else [pulls] * count
    if len(per_repo) != count or not all(isinstance(n, int) and n >= 0 for n in per_repo) or sum(per_repo) > MAX_PULLS:
        raise ApiError(422, f"pulls is a whole number or one per repository, at most {MAX_PULLS} in all")
    try:
        when = datetime.fromisoformat(str(body["updated_at"]).replace("Z", "+00:00")) if body.get("updated_at") \
            else utcnow() - timedelta(hours=1)
    except ValueError:
        raise ApiError(422, "updated_at is an ISO 8601 time") from None
    collaborators = body.get("collaborators") or {}
    levels = {}
    for login, level in collaborators.items():
        user = sim.state.user_by_name(str(login))
        if user is None or level not in ACCESS_BY_NAME:
            raise ApiError(422, f"collaborator {login!r}: no such user, or no such level {level!r}")
        levels[user.id] = ACCESS_BY_NAME[level]
    owner = _owner(request, owner_name, bool(body.get("org")))
    topics = [str(t).lower() for t in body.get("topics") or ()]
    made: list[str] = []
    total = 0
    for position in range(count):
        name = f"{prefix}{position:04d}"
        if sim.state.repo_by_name(owner.login, name) is not None:
            raise ApiError(409, f"{owner.login}/{name} exists already")
        repo = Repo(id=sim.state.next_id("repo"), owner_id=owner.id, name=name,
                    path=sim.state.data_dir / "repos" / owner.login.lower() / f"{name.lower()}.git",
                    settings={**DEFAULT_REPO_SETTINGS, "_seeded": True}, created_at=when, updated_at=when)
        repo.collaborators.update(levels)
        for topic in topics:
            sim.state.add_topic(repo, topic)
        sim.state.repos[repo.id] = repo
        base = _sha(repo.id, "main")
        for number in range(per_repo[position]):
            issue = Issue(id=sim.state.next_id("issue"), repo_id=repo.id, index=repo.next_index, poster_id=doer.id,
                          title=f"Seeded change {number}", body="", is_pull=True, created_at=when, updated_at=when)
            issue.pr = PullRequest(head_branch=f"seed-{number}", base_branch="main",
                                   head_sha=_sha(repo.id, number), base_sha=base, merge_base=base, status="mergeable")
            repo.next_index += 1
            repo.issues[issue.index] = issue
            sim.state.issues_by_id[issue.id] = issue
            total += 1
        made.append(sim.state.repo_full_name(repo))
    return json_response({"repos": made, "pulls": total}, 201)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/_sim/seed", seed)
