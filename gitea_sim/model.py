"""In-memory state of the simulated Gitea: plain dataclasses, no I/O.

Everything the API serves lives here; the git objects live in bare repositories on disk (see gitrepo.py).
The whole simulator runs on one asyncio loop, so the model is mutated without locks between awaits; git
ref updates that must be atomic go through a per-repository asyncio lock (Repo.lock).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Access(IntEnum):
    """A user's access level to a repository, ordered like Gitea's perm.AccessMode."""

    NONE = 0
    READ = 1
    WRITE = 2
    ADMIN = 3
    OWNER = 4


ACCESS_NAMES = {Access.NONE: "none", Access.READ: "read", Access.WRITE: "write", Access.ADMIN: "admin",
                Access.OWNER: "owner"}
ACCESS_BY_NAME = {v: k for k, v in ACCESS_NAMES.items()}


@dataclass
class User:
    id: int
    login: str
    email: str
    full_name: str = ""
    password: str = ""
    is_admin: bool = False
    is_org: bool = False
    visibility: str = "public"
    description: str = ""
    website: str = ""
    location: str = ""
    created: datetime = field(default_factory=utcnow)
    must_change_password: bool = False
    # organisations: the users who own the org (its "Owners" team)
    org_owners: set[int] = field(default_factory=set)
    # webhooks of the user or organisation itself: they get the events of every repository it owns
    hooks: dict[int, Hook] = field(default_factory=dict)


@dataclass
class Token:
    id: int
    user_id: int
    name: str
    sha1: str
    scopes: list[str]
    created_at: datetime = field(default_factory=utcnow)


@dataclass
class Label:
    id: int
    name: str
    color: str
    description: str = ""
    exclusive: bool = False
    is_archived: bool = False


@dataclass
class Protection:
    """A branch protection rule; `opts` holds every BranchProtection field the API accepts."""

    rule_name: str
    opts: dict[str, Any]
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    def flag(self, key: str) -> bool:
        return bool(self.opts.get(key, False))

    def names(self, key: str) -> list[str]:
        value = self.opts.get(key) or []
        return [str(v) for v in value]


@dataclass
class Hook:
    id: int
    url: str
    content_type: str
    secret: str
    events: list[str]
    active: bool
    branch_filter: str
    authorization_header: str
    type: str = "gitea"
    http_method: str = "post"
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass
class Reaction:
    user_id: int
    content: str
    created_at: datetime = field(default_factory=utcnow)


@dataclass
class Comment:
    id: int
    issue_id: int
    user_id: int
    body: str
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    reactions: list[Reaction] = field(default_factory=list)


@dataclass
class TimelineEvent:
    """A non-comment timeline entry (Gitea stores both in the `comment` table with a type)."""

    id: int
    type: str
    user_id: int
    created_at: datetime = field(default_factory=utcnow)
    body: str = ""
    label_id: int | None = None
    dependent_issue_id: int | None = None
    ref_commit_sha: str = ""
    old_ref: str = ""
    new_ref: str = ""


@dataclass
class ScheduledMerge:
    doer_id: int
    style: str
    message: str
    delete_branch: bool
    created_at: datetime = field(default_factory=utcnow)


@dataclass
class Review:
    id: int
    user_id: int
    state: str  # APPROVED | REQUEST_CHANGES | COMMENT
    body: str
    commit_id: str
    official: bool
    submitted_at: datetime = field(default_factory=utcnow)
    stale: bool = False
    dismissed: bool = False


@dataclass
class PullRequest:
    head_branch: str
    base_branch: str
    head_sha: str
    base_sha: str = ""
    merge_base: str = ""
    # checking | mergeable | conflict | empty | error
    status: str = "checking"
    conflicted_files: list[str] = field(default_factory=list)
    merged: bool = False
    merged_at: datetime | None = None
    merged_by_id: int | None = None
    merge_commit_sha: str | None = None
    allow_maintainer_edit: bool = False
    # the fork the head branch lives in; None: the base repository itself
    head_repo_id: int | None = None
    scheduled: ScheduledMerge | None = None
    reviews: list[Review] = field(default_factory=list)
    check_generation: int = 0


@dataclass
class Issue:
    id: int
    repo_id: int
    index: int
    poster_id: int
    title: str
    body: str
    is_pull: bool
    state: str = "open"
    label_ids: list[int] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)
    events: list[TimelineEvent] = field(default_factory=list)
    reactions: list[Reaction] = field(default_factory=list)
    # ids of issues that block this one ("depends on")
    depends_on: list[int] = field(default_factory=list)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    closed_at: datetime | None = None
    pr: PullRequest | None = None


@dataclass
class CommitStatus:
    id: int
    index: int
    sha: str
    state: str
    context: str
    description: str
    target_url: str
    creator_id: int
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass
class CIConfig:
    command: str
    context: str
    delay_s: float
    branches: list[str]
    description_pending: str = "Running"
    runners: int = 0  # how many runs of this configuration may run at once (0: no limit); the rest wait in line
    actions: bool = True  # Gitea Actions (its runs are listed and may be re-run), or another CI posting statuses


@dataclass
class Repo:
    id: int
    owner_id: int
    name: str
    path: Path
    description: str = ""
    private: bool = False
    default_branch: str = "main"
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    settings: dict[str, Any] = field(default_factory=dict)
    collaborators: dict[int, Access] = field(default_factory=dict)
    labels: dict[int, Label] = field(default_factory=dict)
    protections: list[Protection] = field(default_factory=list)
    hooks: dict[int, Hook] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)  # by index
    statuses: dict[str, list[CommitStatus]] = field(default_factory=dict)  # by sha
    ci: list[CIConfig] = field(default_factory=list)
    fork_of: int | None = None  # the parent repository's id
    topics: list[str] = field(default_factory=list)  # lower-case names, in the order they were added
    next_index: int = 1
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def pulls(self) -> list[Issue]:
        return [i for i in self.issues.values() if i.pr is not None]


DEFAULT_REPO_SETTINGS: dict[str, Any] = {
    "has_issues": True,
    "has_wiki": True,
    "has_pull_requests": True,
    "has_projects": True,
    "has_releases": True,
    "has_packages": True,
    "has_actions": True,
    "ignore_whitespace_conflicts": False,
    "allow_merge_commits": True,
    "allow_rebase": True,
    "allow_rebase_explicit": True,
    "allow_squash_merge": True,
    "allow_fast_forward_only_merge": True,
    "allow_rebase_update": True,
    "allow_manual_merge": False,
    "autodetect_manual_merge": False,
    "default_delete_branch_after_merge": False,
    "default_merge_style": "merge",
    "default_allow_maintainer_edit": False,
    "website": "",
    "template": False,
    "archived": False,
    "enable_issue_dependencies": True,
}


@dataclass
class Team:
    """An organisation's team. Only membership is simulated (for allow-lists), not the repository access a
    team grants."""

    id: int
    org_id: int
    name: str
    description: str = ""
    permission: str = "read"
    members: set[int] = field(default_factory=set)


class State:
    """The whole simulated instance."""

    def __init__(self, data_dir: Path, flavour: str = "gitea") -> None:
        self.data_dir = data_dir
        self.flavour = flavour
        self.users: dict[int, User] = {}
        self.tokens: dict[str, Token] = {}
        self.repos: dict[int, Repo] = {}
        self.issues_by_id: dict[int, Issue] = {}
        self.comments_by_id: dict[int, Comment] = {}
        self.teams: dict[int, Team] = {}
        self.topic_ids: dict[str, int] = {}  # every topic ever used (Gitea keeps the row at repo_count 0)
        self._ids: dict[str, itertools.count[int]] = {}

    def next_id(self, kind: str) -> int:
        counter = self._ids.setdefault(kind, itertools.count(1))
        return next(counter)

    # --- lookups (case-insensitive like Gitea) ---
    def user_by_name(self, name: str) -> User | None:
        low = name.lower()
        for u in self.users.values():
            if u.login.lower() == low:
                return u
        return None

    def user(self, uid: int) -> User:
        return self.users[uid]

    def repo_by_name(self, owner: str, name: str) -> Repo | None:
        o = self.user_by_name(owner)
        if o is None:
            return None
        low = name.lower()
        for r in self.repos.values():
            if r.owner_id == o.id and r.name.lower() == low:
                return r
        return None

    def repo_full_name(self, repo: Repo) -> str:
        return f"{self.users[repo.owner_id].login}/{repo.name}"

    def forks_of(self, repo: Repo) -> list[Repo]:
        return sorted((r for r in self.repos.values() if r.fork_of == repo.id), key=lambda r: r.id)

    def head_repo(self, base: Repo, pr: PullRequest) -> Repo:
        """The repository a PR's head branch lives in (the base repository unless the PR is from a fork)."""
        if pr.head_repo_id is None or pr.head_repo_id == base.id:
            return base
        return self.repos.get(pr.head_repo_id, base)

    def topic_count(self, name: str) -> int:
        """Topic.RepoCount: how many repositories carry the topic."""
        return sum(1 for r in self.repos.values() if name in r.topics)

    def add_topic(self, repo: Repo, name: str) -> None:
        if name not in repo.topics:
            self.topic_ids.setdefault(name, len(self.topic_ids) + 1)
            repo.topics.append(name)

    def comment_repo(self, comment: Comment) -> Repo:
        return self.repos[self.issues_by_id[comment.issue_id].repo_id]
