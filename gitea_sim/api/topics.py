"""Repository topics and the repository search, as routers/api/v1/repo/topic.go and repo.go (Search) with
models/repo/topic.go and models/repo/repo_list.go (SearchRepositoryCondition) do them in Gitea 1.25."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..core import Sim
from ..model import Access, Repo, User, utcnow
from ..web import (
    ApiError,
    doer_of,
    empty,
    json_response,
    list_field,
    not_found,
    paginate,
    read_json,
    repo_ctx,
    require_access,
    require_doer,
    sim_of,
)

TOPIC_RE = re.compile(r"^[a-z0-9][-.a-z0-9]*$")
MAX_TOPICS = 25
MAX_TOPIC_LENGTH = 35
GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # strconv.ParseBool; anything unparsable is false


def valid_topic(name: str) -> bool:
    """ValidateTopic: at most 35 characters of lower-case letters, digits, dashes and dots, not leading."""
    return len(name) <= MAX_TOPIC_LENGTH and TOPIC_RE.match(name) is not None


def sanitize_topics(names: list[str]) -> tuple[list[str], list[str]]:
    """SanitizeAndValidateTopics: trimmed and lower-cased; empty names and repeats dropped; (valid, invalid)."""
    valid: list[str] = []
    invalid: list[str] = []
    for raw in names:
        name = raw.lower().strip()
        if not name or name in valid:
            continue
        (valid if valid_topic(name) else invalid).append(name)
    return valid, invalid


def _topic_param(request: web.Request) -> str:
    name = request.match_info["topic"].lower().strip()
    if not valid_topic(name):
        raise ApiError(422, body={"invalidTopics": name, "message": "Topic name is invalid"})
    return name


def _require_admin(request: web.Request, access: Access) -> None:
    require_doer(request)
    require_access(access, Access.ADMIN)


async def list_topics(request: web.Request) -> web.Response:
    """ListTopics: sorted by name; paged only when `page` is given (FindTopics skips paging at page 0)."""
    repo, _ = repo_ctx(request)
    names = sorted(repo.topics)
    headers = {"X-Total-Count": str(len(names)), "Access-Control-Expose-Headers": "X-Total-Count, Link"}
    if "page" in request.query:
        names, headers = paginate(request, names)
        headers.pop("Link", None)  # ListTopics sets the total count only
    return json_response({"topics": names}, headers=headers)


async def replace_topics(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    _require_admin(request, access)
    body = await read_json(request)
    names = list_field(body, "topics")
    if not all(isinstance(n, str) for n in names):
        raise ApiError(422, "[Topics]: must be a list of strings")
    valid, invalid = sanitize_topics(names)
    if len(valid) > MAX_TOPICS:
        raise ApiError(422, body={"invalidTopics": None, "message": "Exceeding maximum number of topics per repo"})
    if invalid:
        raise ApiError(422, body={"invalidTopics": invalid, "message": "Topic names are invalid"})
    repo.topics = [t for t in repo.topics if t in valid]
    for name in valid:
        sim.state.add_topic(repo, name)
    _touched(repo)
    return empty(204)


async def add_topic(request: web.Request) -> web.Response:
    sim = sim_of(request)
    repo, access = repo_ctx(request)
    _require_admin(request, access)
    name = _topic_param(request)
    if len(repo.topics) >= MAX_TOPICS:  # counted before looking whether the repository has it already
        raise ApiError(422, body={"message": "Exceeding maximum allowed topics per repo."})
    sim.state.add_topic(repo, name)
    _touched(repo)
    return empty(204)


async def delete_topic(request: web.Request) -> web.Response:
    repo, access = repo_ctx(request)
    _require_admin(request, access)
    name = _topic_param(request)
    if name not in repo.topics:
        raise not_found()
    repo.topics.remove(name)
    _touched(repo)
    return empty(204)


def _touched(repo: Repo) -> None:
    """Topics are synced into the repository row (models/repo/topic.go, ``syncTopicsInRepository``:
    ``ID(repoID).Cols("topics").Update(...)``), and xorm sets the ``updated`` column ``updated_unix`` on every
    update that does not ask ``NoAutoTime()``: the repository counts as updated."""
    repo.updated_at = utcnow()


# --- GET /repos/search ---
def _go_bool(request: web.Request, key: str) -> bool:
    return request.query.get(key, "").strip() in GO_TRUE


def _go_int(request: web.Request, key: str) -> int:
    try:
        return int(request.query.get(key, "0"))
    except ValueError:
        return 0


SortKey = Callable[[Sim, Repo], Any]
SORT_KEYS: dict[str, SortKey] = {
    "alpha": lambda sim, r: r.name,
    "created": lambda sim, r: r.created_at,
    "updated": lambda sim, r: r.updated_at,
    "size": lambda sim, r: 0,
    "git_size": lambda sim, r: 0,
    "lfs_size": lambda sim, r: 0,
    "stars": lambda sim, r: 0,
    "forks": lambda sim, r: len(sim.state.forks_of(r)),
    "id": lambda sim, r: r.id,
}


def _visible(sim: Sim, repo: Repo, doer: User | None, private: bool) -> bool:
    """With `private` (signed in, private not false): what the doer may read; else public repositories of
    public owners only."""
    if private and doer is not None:
        return sim.perms.access(repo, doer) >= Access.READ
    return not repo.private and sim.state.users[repo.owner_id].visibility == "public"


def _of_owner(sim: Sim, repo: Repo, uid: int, collaborate: bool | None) -> bool:
    """The `uid` clause: repositories uid owns, and (unless exclusive) those it collaborates on or reaches
    through an organisation it owns (the simulator's teams grant no repository access)."""
    owns = repo.owner_id == uid
    owner = sim.state.users[repo.owner_id]
    shared = not owns and (uid in repo.collaborators or (owner.is_org and uid in owner.org_owners))
    if collaborate is False:
        return owns
    if collaborate is True:
        return shared
    return owns or shared


def _matches(repo: Repo, keyword: str, topic_only: bool, include_desc: bool) -> bool:
    for part in keyword.split(","):
        word = part.lower()
        if topic_only:
            if word in repo.topics:
                return True
            continue
        if any(word in t for t in repo.topics) or word in repo.name.lower():
            return True
        if include_desc and word in repo.description.lower():
            return True
    return False


async def search(request: web.Request) -> web.Response:
    sim = sim_of(request)
    doer = doer_of(request)
    q = request.query
    keyword = q.get("q", "").strip()
    private = doer is not None and (q.get("private", "") == "" or _go_bool(request, "private"))
    uid = _go_int(request, "uid")
    priority = _go_int(request, "priority_owner_id")
    collaborate: bool | None = False if _go_bool(request, "exclusive") else None
    fork: bool | None = None
    mode = q.get("mode", "")
    if mode == "source":
        fork = False
    elif mode == "fork":
        fork = True
    elif mode == "collaborative":
        collaborate = True
    elif mode not in ("", "mirror"):
        raise ApiError(422, f'Invalid search mode: "{mode}"')
    flags: dict[str, bool] = {key: _go_bool(request, key) for key in ("template", "archived", "is_private")
                              if q.get(key, "") != ""}
    sort, order = q.get("sort", ""), q.get("order", "") or "asc"
    if sort:
        if order not in ("asc", "desc"):
            raise ApiError(422, f'Invalid sort order: "{order}"')
        if sort not in SORT_KEYS:
            raise ApiError(422, f'Invalid sort mode: "{sort}"')
    key = SORT_KEYS[sort or "alpha"]
    found = []
    for repo in sim.state.repos.values():
        if not _visible(sim, repo, doer, private):
            continue
        if uid > 0 and not _of_owner(sim, repo, uid, collaborate):
            continue
        if keyword and not _matches(repo, keyword, _go_bool(request, "topic"), _go_bool(request, "includeDesc")):
            continue
        if mode == "mirror" or (fork is not None and (repo.fork_of is not None) != fork):
            continue  # the simulator has no mirrors
        if "template" in flags and bool(repo.settings.get("template")) != flags["template"]:
            continue
        if "archived" in flags and bool(repo.settings.get("archived")) != flags["archived"]:
            continue
        if "is_private" in flags and repo.private != flags["is_private"]:
            continue
        found.append(repo)
    found.sort(key=lambda r: r.id)
    found.sort(key=lambda r: key(sim, r), reverse=sort != "" and order == "desc")
    if priority > 0:  # "CASE WHEN owner_id = <priority> THEN 0 ELSE owner_id END, <order>"
        found.sort(key=lambda r: 0 if r.owner_id == priority else r.owner_id)
    chunk, headers = paginate(request, found)
    data = [sim.ser.repo(r, sim.perms.access(r, doer)) for r in chunk]
    return json_response({"ok": True, "data": data}, headers=headers)


def add_routes(app: web.Application, p: str) -> None:
    r = app.router
    r.add_get(f"{p}/repos/search", search)
    repo = f"{p}/repos/{{owner}}/{{repo}}"
    r.add_get(f"{repo}/topics", list_topics)
    r.add_put(f"{repo}/topics", replace_topics)
    r.add_put(f"{repo}/topics/{{topic}}", add_topic)
    r.add_delete(f"{repo}/topics/{{topic}}", delete_topic)
