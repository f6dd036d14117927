"""A thin client of the Gitea/Forgejo REST API on the app's aiohttp session.

Every call passes :meth:`GiteaClient._request`, the one choke point: token in the ``Authorization``
header (never in a URL), HTTP status → typed error (``bot.forge.errors``), and retries for GETs only —
with exponential backoff, jitter and ``Retry-After`` — on 429, 5xx and connection failures. A failed
POST/PUT/PATCH/DELETE is never repeated here: the caller re-reads the state and decides
(docs/faults.md #19).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr

from bot.forge.errors import ForgeError, NotFound, RateLimited, ServerError, Unavailable, error_for
from bot.forge.events import MalformedEvent, PullRequestInfo, pull_info

PAGE_LIMIT = 50  # Gitea's maximum page size


@dataclass(frozen=True, slots=True)
class Status:
    context: str
    state: str
    target_url: str
    description: str
    id: int | None


@dataclass(frozen=True, slots=True)
class ActionRun:
    """A Gitea Actions workflow run (``GET /repos/{o}/{r}/actions/runs``): ``status`` is queued, waiting,
    in_progress or completed, and a completed run's ``conclusion`` is success, failure, cancelled or skipped
    (Gitea's ``convert.ToActionsStatus``)."""

    id: int
    head_sha: str
    status: str
    conclusion: str

    @property
    def failed(self) -> bool:
        return self.status == "completed" and self.conclusion in ("failure", "cancelled")


@dataclass(frozen=True, slots=True)
class Protection:
    branch: str
    status_checks: bool
    contexts: tuple[str, ...]
    required_approvals: int
    push_whitelist: tuple[str, ...]
    enable_push: bool


@dataclass(frozen=True, slots=True)
class Comment:
    id: int
    body: str
    author: str
    created_at: str
    updated_at: str
    number: int | None = None
    is_pull: bool = False


@dataclass(frozen=True, slots=True)
class Hook:
    id: int
    url: str
    events: tuple[str, ...]
    active: bool
    content_type: str = "json"
    branch_filter: str = "*"


@dataclass(frozen=True, slots=True)
class Branch:
    """A branch with the protection rule in effect for it and what the token's user may do there."""

    name: str
    sha: str
    protected: bool
    rule: str  # effective_branch_protection_name ("" when unprotected)
    status_checks: bool
    contexts: tuple[str, ...]
    user_can_push: bool
    user_can_merge: bool


@dataclass(frozen=True, slots=True)
class RepoSummary:
    """A repository as a listing shows it: what discovery decides on."""

    full_name: str
    owner_id: int
    admin: bool  # the token's user administers it (``permissions.admin``)
    archived: bool
    updated_at: datetime | None
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChangedPull:
    """A pull request the change feed (``GET /repos/issues/search``) names: updated since the time asked."""

    repository: str
    number: int
    updated_at: datetime | None
    state: str


Sleep = Callable[[float], Awaitable[None]]


def _path(*parts: str | int) -> str:
    return "/".join(quote(str(part), safe="") for part in parts)


def _path_segments(path: str) -> str:
    """A file path in a URL: each segment escaped, the slashes kept."""
    return "/".join(quote(part, safe="") for part in path.strip("/").split("/"))


class GiteaClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: SecretStr | None,
        *,
        get_retries: int = 4,
        backoff: float = 0.25,
        timeout: float = 30.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._session = session
        self._api = base_url.rstrip("/") + "/api/v1"
        self._token = token
        self._get_retries = get_retries
        self._backoff = backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._sleep = sleep

    # -- the choke point ------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        raw: bool = False,
    ) -> tuple[int, Any, Mapping[str, str]]:
        """(status, body, headers); the body is decoded JSON, or the bytes as sent with ``raw``."""
        headers = {"Accept": "application/octet-stream" if raw else "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"token {self._token.get_secret_value()}"
        attempts = 1 + (self._get_retries if method == "GET" else 0)
        for attempt in range(attempts):
            try:
                async with self._session.request(
                    method, self._api + path, json=json, params=params, headers=headers, timeout=self._timeout
                ) as response:
                    data = await response.read()
                    if raw and response.status < 400:
                        return response.status, data, response.headers
                    text = data.decode("utf-8", errors="replace")  # JSON is UTF-8 (RFC 8259)
                    body = _decode(text, response.content_type)
                    if response.status < 400:
                        return response.status, body, response.headers
                    error = error_for(method, path, response.status, _message(body, text))
                    retry_after = _retry_after(response.headers)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                error = Unavailable(method, path, None, type(exc).__name__)
                retry_after = None
            retriable = isinstance(error, (RateLimited, ServerError, Unavailable))
            if not retriable or attempt == attempts - 1:
                raise error
            delay = self._backoff * (2**attempt) * (0.5 + random.random())
            await self._sleep(max(delay, retry_after or 0.0))
        raise AssertionError("unreachable")

    async def _get(self, path: str, **params: str | int) -> Any:
        return (await self._request("GET", path, params=params or None))[1]

    async def _pages(
        self,
        path: str,
        *,
        until_empty: bool = False,
        params: Mapping[str, str | int] | None = None,
        key: str | None = None,
    ) -> AsyncIterator[Any]:
        """Every item of a paginated list, a page of PAGE_LIMIT at a time; a short page is the last one,
        except with ``until_empty`` (Gitea's timeline filters after LIMIT: pages can come back short). With
        ``key``, each page is an object holding the list under that key (the Actions API's ``workflow_runs``)."""
        page = 1
        while True:
            _, body, _ = await self._request("GET", path, params={**(params or {}), "page": page, "limit": PAGE_LIMIT})
            items = (body.get(key) if isinstance(body, Mapping) else None) if key is not None else body
            if not items:
                return
            for item in items:
                yield item
            if len(items) < PAGE_LIMIT and not until_empty:
                return
            page += 1

    async def current_user(self) -> str:
        data = await self._get("/user")
        return str(data.get("login") or data.get("username") or "")

    async def get_repo(self, owner: str, repo: str) -> dict[str, Any]:
        data: dict[str, Any] = await self._get(f"/repos/{_path(owner, repo)}")
        return data

    async def edit_repo(self, owner: str, repo: str, **fields: Any) -> None:
        await self._request("PATCH", f"/repos/{_path(owner, repo)}", json=fields)

    async def read_file(self, owner: str, repo: str, path: str, ref: str) -> bytes | None:
        """The file at `path` on `ref` (a branch, tag or full commit id); None when the ref or the file does
        not exist, or the path is not a regular file. Read through the contents API, which resolves `ref`
        strictly (the raw endpoint falls back to the default branch for a ref it does not know); a file too
        large for it to inline (over 10 MiB) is read raw at the commit that last changed it."""
        try:
            data = await self._get(f"/repos/{_path(owner, repo)}/contents/{_path_segments(path)}", ref=ref)
        except NotFound:
            return None
        if not isinstance(data, Mapping) or data.get("type") != "file":
            return None
        content = data.get("content")
        if isinstance(content, str) and data.get("encoding") == "base64":
            return base64.b64decode(content)
        at = str(data.get("last_commit_sha") or "")
        if not at:
            raise ForgeError("GET", "contents", 200, f"{path} is too large to be read through the contents API")
        try:
            _, raw, _ = await self._request(
                "GET", f"/repos/{_path(owner, repo)}/raw/{_path_segments(path)}", params={"ref": at}, raw=True
            )
        except NotFound:
            return None
        return bytes(raw)

    async def list_topics(self, owner: str, repo: str) -> list[str]:
        data = await self._get(f"/repos/{_path(owner, repo)}/topics")
        return [str(name) for name in (data or {}).get("topics") or ()]

    async def search_repos_by_topic(self, topic: str, *, max_pages: int = 20) -> list[str]:
        """Full names of the repositories (the token's user may see) carrying exactly this topic."""
        found: list[str] = []
        for page in range(1, max_pages + 1):
            params: dict[str, str | int] = {"q": topic, "topic": "true", "page": page, "limit": PAGE_LIMIT}
            _, data, _ = await self._request("GET", "/repos/search", params=params)
            items = (data or {}).get("data") or []
            found.extend(str(item.get("full_name") or "") for item in items)
            if len(items) < PAGE_LIMIT:
                break
        return found

    async def owner_repos(self, owner: str) -> list[str]:
        """Full names of a user's or an organisation's repositories (GET /users/{owner}/repos takes both)."""
        return [str(item.get("full_name") or "") async for item in self._pages(f"/users/{_path(owner)}/repos")]

    async def owner_listing(self, owner: str, *, max_pages: int = 200) -> list[RepoSummary]:
        """Every repository of an organisation (``GET /orgs/{org}/repos``) or, for a user, of the user
        (``GET /users/{user}/repos``): Gitea answers the organisation route 404 for a user."""
        try:
            return await self._summaries(f"/orgs/{_path(owner)}/repos", max_pages=max_pages)
        except NotFound:
            return await self._summaries(f"/users/{_path(owner)}/repos", max_pages=max_pages)

    async def search_listing(
        self,
        *,
        topic: str | None = None,
        uid: int | None = None,
        newer_than: datetime | None = None,
        max_pages: int = 200,
    ) -> list[RepoSummary]:
        """``GET /repos/search``: with ``topic``, the repositories carrying exactly that topic; with ``uid``,
        those the user or organisation owns. With ``newer_than``, sorted by ``updated`` newest first and read
        only until the first one updated before it (Gitea bumps a repository's ``updated_unix`` on every write
        of its row: a push, a setting, archiving, a topic)."""
        params: dict[str, str | int] = {}
        if topic is not None:
            params.update(q=topic, topic="true")
        if uid is not None:
            params.update(uid=uid, exclusive="true")
        if newer_than is not None:
            params.update(sort="updated", order="desc")
        return await self._summaries("/repos/search", params=params, newer_than=newer_than, max_pages=max_pages)

    async def _summaries(
        self,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        newer_than: datetime | None = None,
        max_pages: int,
    ) -> list[RepoSummary]:
        found: list[RepoSummary] = []
        for page in range(1, max_pages + 1):
            _, data, _ = await self._request("GET", path, params={**(params or {}), "page": page, "limit": PAGE_LIMIT})
            items = (data or {}).get("data") if isinstance(data, Mapping) else data
            items = items or []
            for item in items:
                summary = _summary(item)
                if newer_than is not None and summary.updated_at is not None and summary.updated_at < newer_than:
                    return found
                found.append(summary)
            if len(items) < PAGE_LIMIT:
                return found
        raise ForgeError("GET", path, 200, f"more than {max_pages} pages of repositories: listing cut short")

    async def user_id(self, name: str) -> int:
        """The id of a user or organisation (``GET /users/{name}`` answers both)."""
        data = await self._get(f"/users/{_path(name)}")
        if not isinstance(data, Mapping) or not isinstance(data.get("id"), int):
            raise ForgeError("GET", "/users", 200, f"answer about {name} lacks its id")
        return int(data["id"])

    async def changed_pulls(
        self, owner: str, since: datetime | None, *, max_pages: int = 100
    ) -> tuple[list[ChangedPull], datetime | None]:
        """The change feed: the owner's pull requests (any state) updated at or after ``since``, across its
        repositories the token's user may read, in one paged listing (``GET /repos/issues/search``, which
        filters on ``issue.updated_unix``; Gitea bumps that on every comment of any type — a label, a push to
        the head, a close or merge, a scheduled merge: ``models/issues/comment.go``, ``CreateComment``). Also
        the forge's own time of the first page's answer (its ``Date`` header), to ask from next time."""
        params: dict[str, str | int] = {"type": "pulls", "state": "all", "owner": owner, "limit": PAGE_LIMIT}
        if since is not None:
            params["since"] = since.isoformat()
        found: list[ChangedPull] = []
        answered: datetime | None = None
        for page in range(1, max_pages + 1):
            _, items, headers = await self._request("GET", "/repos/issues/search", params={**params, "page": page})
            if answered is None:
                answered = _http_date(headers.get("Date"))
            for item in items or ():
                where = item.get("repository") or {}
                found.append(
                    ChangedPull(
                        repository=str(where.get("full_name") or ""),
                        number=int(item["number"]),
                        updated_at=_timestamp(item.get("updated_at")),
                        state=str(item.get("state") or ""),
                    )
                )
            if len(items or ()) < PAGE_LIMIT:
                return found, answered
        raise ForgeError("GET", "/repos/issues/search", 200, f"more than {max_pages} pages of changes")

    # -- pull requests --------------------------------------------------------------------------------

    async def get_pull(self, owner: str, repo: str, number: int) -> PullRequestInfo:
        return _pull(await self._get(f"/repos/{_path(owner, repo)}/pulls/{number}"))

    async def list_pulls(self, owner: str, repo: str, state: str = "open") -> list[PullRequestInfo]:
        return [
            _pull(item) async for item in self._pages(f"/repos/{_path(owner, repo)}/pulls", params={"state": state})
        ]

    async def merge_pull(
        self,
        owner: str,
        repo: str,
        number: int,
        do: str,
        *,
        merge_commit_id: str | None = None,
        head_commit_id: str | None = None,
        title: str | None = None,
        message: str | None = None,
        delete_branch_after_merge: bool = False,
    ) -> None:
        body: dict[str, Any] = {"Do": do, "do": do, "delete_branch_after_merge": delete_branch_after_merge}
        if merge_commit_id:
            body["MergeCommitID"] = body["merge_commit_id"] = merge_commit_id
        if head_commit_id:
            body["head_commit_id"] = head_commit_id
        if title:
            body["MergeTitleField"] = body["merge_title_field"] = title
        if message:
            body["MergeMessageField"] = body["merge_message_field"] = message
        await self._request("POST", f"/repos/{_path(owner, repo)}/pulls/{number}/merge", json=body)

    async def is_merged(self, owner: str, repo: str, number: int) -> bool:
        try:
            status, _, _ = await self._request("GET", f"/repos/{_path(owner, repo)}/pulls/{number}/merge")
        except NotFound:
            return False
        return status == 204

    # -- branches, statuses, protections --------------------------------------------------------------

    async def branch_sha(self, owner: str, repo: str, branch: str) -> str:
        data = await self._get(f"/repos/{_path(owner, repo)}/branches/{_path(branch)}")
        return str(_obj(data, "commit")["id"])

    async def branch(self, owner: str, repo: str, name: str) -> Branch | None:
        try:
            data = await self._get(f"/repos/{_path(owner, repo)}/branches/{_path(name)}")
        except NotFound:
            return None
        return Branch(
            name=str(data.get("name") or name),
            sha=str(_obj(data, "commit").get("id") or ""),
            protected=bool(data.get("protected")),
            rule=str(data.get("effective_branch_protection_name") or ""),
            status_checks=bool(data.get("enable_status_check")),
            contexts=tuple(str(c) for c in data.get("status_check_contexts") or ()),
            user_can_push=bool(data.get("user_can_push")),
            user_can_merge=bool(data.get("user_can_merge")),
        )

    async def branch_names(self, owner: str, repo: str, *, max_pages: int = 20) -> list[str]:
        names: list[str] = []
        async for item in self._pages(f"/repos/{_path(owner, repo)}/branches"):
            names.append(str(item.get("name") or ""))
            if len(names) >= max_pages * PAGE_LIMIT:
                break
        return names

    async def delete_branch(self, owner: str, repo: str, branch: str) -> bool:
        try:
            await self._request("DELETE", f"/repos/{_path(owner, repo)}/branches/{_path(branch)}")
        except NotFound:
            return False
        return True

    async def create_status(
        self, owner: str, repo: str, sha: str, *, state: str, context: str, description: str = "", target_url: str = ""
    ) -> None:
        body = {"state": state, "context": context, "description": description, "target_url": target_url}
        await self._request("POST", f"/repos/{_path(owner, repo)}/statuses/{sha}", json=body)

    async def list_statuses(self, owner: str, repo: str, sha: str) -> list[Status]:
        """Statuses of a commit, newest first; the latest per context is the one that counts."""
        found = []
        async for item in self._pages(f"/repos/{_path(owner, repo)}/commits/{sha}/statuses", params={"sort": "newest"}):
            found.append(
                Status(
                    context=str(item.get("context", "")),
                    state=str(item.get("status") or item.get("state") or ""),
                    target_url=str(item.get("target_url") or ""),
                    description=str(item.get("description") or ""),
                    id=item.get("id"),
                )
            )
        return found

    async def action_runs(self, owner: str, repo: str, head_sha: str) -> list[ActionRun]:
        """The Actions runs a commit triggered (Gitea 1.23 and newer list them by ``head_sha``; ``[]`` where the
        server has no Actions, or CI is not Gitea Actions)."""
        runs: list[ActionRun] = []
        try:
            listing = self._pages(
                f"/repos/{_path(owner, repo)}/actions/runs", params={"head_sha": head_sha}, key="workflow_runs"
            )
            async for item in listing:
                if str(item.get("head_sha") or "") == head_sha:  # the filter is the server's; trusted, but checked
                    runs.append(
                        ActionRun(
                            id=int(item["id"]),
                            head_sha=head_sha,
                            status=str(item.get("status") or ""),
                            conclusion=str(item.get("conclusion") or ""),
                        )
                    )
        except NotFound:
            return []
        return runs

    async def rerun_failed_jobs(self, owner: str, repo: str, run_id: int) -> None:
        """Re-run a finished run's failed and cancelled jobs (and those that need them) on the same commit:
        ``POST .../actions/runs/{run}/rerun-failed-jobs``, 201, Gitea newer than 1.25 (routers/api/v1/repo/
        action.go). Older servers and Forgejo have no such route: 404. 400 when the run is not done or has no
        failed job; 409 when it is being re-run already."""
        await self._request("POST", f"/repos/{_path(owner, repo)}/actions/runs/{run_id}/rerun-failed-jobs")

    async def branch_protection(self, owner: str, repo: str, branch: str) -> Protection | None:
        try:
            data = await self._get(f"/repos/{_path(owner, repo)}/branch_protections/{_path(branch)}")
        except NotFound:
            return None
        return Protection(
            branch=branch,
            status_checks=bool(data.get("enable_status_check")),
            contexts=tuple(data.get("status_check_contexts") or ()),
            required_approvals=int(data.get("required_approvals") or 0),
            push_whitelist=tuple(data.get("push_whitelist_usernames") or ()),
            enable_push=bool(data.get("enable_push")),
        )

    # -- issues: comments, reactions, labels, permissions ---------------------------------------------

    async def comment(self, owner: str, repo: str, number: int, body: str) -> int:
        _, data, _ = await self._request(
            "POST", f"/repos/{_path(owner, repo)}/issues/{number}/comments", json={"body": body}
        )
        return int(data["id"])

    async def list_comments(self, owner: str, repo: str, number: int) -> list[Comment]:
        """A PR's comments (Gitea does not paginate this list)."""
        items = await self._get(f"/repos/{_path(owner, repo)}/issues/{number}/comments")
        return [_comment(item) for item in items or ()]

    async def repo_comments(
        self, owner: str, repo: str, *, since: str | None = None, max_pages: int = 10
    ) -> list[Comment]:
        """Comments on every issue and PR of a repository, oldest first, at most ``max_pages`` pages."""
        found: list[Comment] = []
        params: dict[str, str | int] = {"since": since} if since else {}
        async for item in self._pages(f"/repos/{_path(owner, repo)}/issues/comments", params=params):
            found.append(_comment(item))
            if len(found) >= max_pages * PAGE_LIMIT:
                break
        return found

    async def dependencies(self, owner: str, repo: str, number: int) -> list[tuple[str, str, int, bool]]:
        """Gitea's native "depends on" list: (owner, repo, number, is_pull) of each blocking issue or PR."""
        found = []
        async for item in self._pages(f"/repos/{_path(owner, repo)}/issues/{number}/dependencies"):
            where = item.get("repository") or {}
            full = str(where.get("full_name") or f"{owner}/{repo}")
            dep_owner, _, dep_repo = full.partition("/")
            found.append((dep_owner, dep_repo, int(item["number"]), item.get("pull_request") is not None))
        return found

    async def issue_state(self, owner: str, repo: str, number: int) -> tuple[str, bool] | None:
        """("open" | "closed" | "merged", is_pull) of an issue or PR; None when the forge does not know it."""
        try:
            data = await self._get(f"/repos/{_path(owner, repo)}/issues/{number}")
        except NotFound:
            return None
        pull = data.get("pull_request")
        if isinstance(pull, Mapping) and pull.get("merged"):
            return "merged", True
        return ("closed" if data.get("state") == "closed" else "open"), isinstance(pull, Mapping)

    async def approvals(self, owner: str, repo: str, number: int) -> int:
        """Approving reviews that count for branch protection (official, not dismissed, not stale)."""
        reviews = await self._get(f"/repos/{_path(owner, repo)}/pulls/{number}/reviews")
        latest: dict[str, Mapping[str, Any]] = {}
        for review in reviews or ():
            login = str((review.get("user") or {}).get("login") or "")
            latest[login] = review  # oldest first: the last one of each reviewer counts
        return sum(
            1
            for review in latest.values()
            if review.get("state") == "APPROVED"
            and review.get("official", True)
            and not review.get("dismissed")
            and not review.get("stale")
        )

    async def timeline(self, owner: str, repo: str, number: int, *, max_pages: int = 5) -> list[Mapping[str, Any]]:
        """Timeline entries, oldest first. Gitea filters after applying LIMIT, so pages on to an empty page."""
        found: list[Mapping[str, Any]] = []
        async for item in self._pages(f"/repos/{_path(owner, repo)}/issues/{number}/timeline", until_empty=True):
            found.append(item)
            if len(found) >= max_pages * PAGE_LIMIT:
                break
        return found

    async def label_ids(self, owner: str, repo: str) -> dict[str, int]:
        return {str(item["name"]): int(item["id"]) async for item in self._pages(f"/repos/{_path(owner, repo)}/labels")}

    async def remove_label(self, owner: str, repo: str, number: int, label_id: int) -> None:
        with contextlib.suppress(NotFound):
            await self._request("DELETE", f"/repos/{_path(owner, repo)}/issues/{number}/labels/{label_id}")

    async def delete_comment(self, owner: str, repo: str, comment_id: int) -> bool:
        """False when there is no such comment."""
        try:
            await self._request("DELETE", f"/repos/{_path(owner, repo)}/issues/comments/{comment_id}")
        except NotFound:
            return False
        return True

    async def react(self, owner: str, repo: str, comment_id: int, content: str) -> None:
        await self._request(
            "POST", f"/repos/{_path(owner, repo)}/issues/comments/{comment_id}/reactions", json={"content": content}
        )

    async def permission(self, owner: str, repo: str, user: str) -> str:
        """none, read, write, admin or owner."""
        try:
            data = await self._get(f"/repos/{_path(owner, repo)}/collaborators/{_path(user)}/permission")
        except NotFound:
            return "none"
        return str(data.get("permission") or "none")

    async def team_member(self, org: str, team: str, user: str) -> bool:
        """Whether ``user`` is in the team ``team`` of organisation ``org`` (False when either is unknown)."""
        try:
            async for item in self._pages(f"/orgs/{_path(org)}/teams"):
                if str(item.get("name", "")).lower() == team.lower():
                    await self._get(f"/teams/{int(item['id'])}/members/{_path(user)}")
                    return True
        except NotFound:
            return False
        return False

    # -- hooks ----------------------------------------------------------------------------------------

    async def list_hooks(self, owner: str, repo: str) -> list[Hook]:
        return [_hook(item) async for item in self._pages(f"/repos/{_path(owner, repo)}/hooks")]

    async def create_hook(self, owner: str, repo: str, url: str, secret: SecretStr, events: tuple[str, ...]) -> Hook:
        _, data, _ = await self._request(
            "POST", f"/repos/{_path(owner, repo)}/hooks", json=_hook_body(url, secret, events)
        )
        return _hook(data)

    async def edit_hook(self, owner: str, repo: str, hook_id: int, secret: SecretStr, events: tuple[str, ...]) -> None:
        body = {"active": True, "events": list(events), "config": {"secret": secret.get_secret_value()}}
        await self._request("PATCH", f"/repos/{_path(owner, repo)}/hooks/{hook_id}", json=body)

    async def delete_hook(self, owner: str, repo: str, hook_id: int) -> None:
        await self._request("DELETE", f"/repos/{_path(owner, repo)}/hooks/{hook_id}")

    async def test_hook(self, owner: str, repo: str, hook_id: int) -> None:
        """Have the forge send this hook a push event for the default branch's head, signed with its secret
        (Gitea answers 204 once the delivery is queued, not once it arrived)."""
        await self._request("POST", f"/repos/{_path(owner, repo)}/hooks/{hook_id}/tests")

    async def list_org_hooks(self, org: str) -> list[Hook]:
        return [_hook(item) async for item in self._pages(f"/orgs/{_path(org)}/hooks")]

    async def create_org_hook(self, org: str, url: str, secret: SecretStr, events: tuple[str, ...]) -> Hook:
        """A hook of the organisation: it gets the events of every repository the organisation owns."""
        _, data, _ = await self._request("POST", f"/orgs/{_path(org)}/hooks", json=_hook_body(url, secret, events))
        return _hook(data)

    async def edit_org_hook(self, org: str, hook_id: int, secret: SecretStr, events: tuple[str, ...]) -> None:
        body = {"active": True, "events": list(events), "config": {"secret": secret.get_secret_value()}}
        await self._request("PATCH", f"/orgs/{_path(org)}/hooks/{hook_id}", json=body)

    async def delete_org_hook(self, org: str, hook_id: int) -> None:
        await self._request("DELETE", f"/orgs/{_path(org)}/hooks/{hook_id}")


def _decode(text: str, content_type: str) -> Any:
    if not text:
        return None
    if "json" in content_type:
        try:
            return json.loads(text)
        except ValueError:
            return None
    return None


def _message(body: Any, text: str) -> str:
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        return str(body["message"])
    return text[:200]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None


def _obj(data: Any, key: str) -> Mapping[str, Any]:
    value = data.get(key) if isinstance(data, Mapping) else None
    if not isinstance(value, Mapping):
        raise ForgeError("GET", key, 200, f"answer lacks {key}")
    return value


def _pull(data: Any) -> PullRequestInfo:
    try:
        return pull_info(data)
    except MalformedEvent as exc:
        raise ForgeError("GET", "pulls", 200, f"unexpected pull request shape: {exc}") from None


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def _summary(item: Mapping[str, Any]) -> RepoSummary:
    permissions = item.get("permissions") or {}
    owner = item.get("owner") or {}
    return RepoSummary(
        full_name=str(item.get("full_name") or ""),
        owner_id=int(owner.get("id") or 0),
        admin=bool(permissions.get("admin")),
        archived=bool(item.get("archived")),
        updated_at=_timestamp(item.get("updated_at")),
        topics=tuple(str(t) for t in item.get("topics") or ()),
    )


def _comment(item: Mapping[str, Any]) -> Comment:
    user = item.get("user") or {}
    pull_url = str(item.get("pull_request_url") or "")
    issue_url = str(item.get("issue_url") or "")
    tail = (pull_url or issue_url).rstrip("/").rsplit("/", 1)[-1]
    return Comment(
        id=int(item["id"]),
        body=str(item.get("body") or ""),
        author=str(user.get("login") or ""),
        created_at=str(item.get("created_at") or ""),
        updated_at=str(item.get("updated_at") or ""),
        number=int(tail) if tail.isdigit() else None,
        is_pull=bool(pull_url),
    )


def _hook_body(url: str, secret: SecretStr, events: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "gitea",
        "active": True,
        "events": list(events),
        "config": {"url": url, "content_type": "json", "secret": secret.get_secret_value()},
    }


def _hook(item: Mapping[str, Any]) -> Hook:
    config = item.get("config") or {}
    return Hook(
        id=int(item["id"]),
        url=str(config.get("url") or ""),
        events=tuple(item.get("events") or ()),
        active=bool(item.get("active")),
        content_type=str(config.get("content_type") or ""),
        branch_filter=str(item.get("branch_filter") or ""),
    )
