"""The simulator object: state plus the services that change it (users, repos, pushes, statuses)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ci import CIRunner
from .faults import EventLog, Faults
from .gitrepo import ZERO_SHA, GitRepo, Ident
from .model import DEFAULT_REPO_SETTINGS, Access, CommitStatus, Repo, State, TimelineEvent, Token, User, utcnow
from .perms import Perms
from .pulls import PullService
from .serialize import Serializer
from .webhooks import Payloads, Webhooks

log = logging.getLogger("gitea_sim")
STATUS_STATES = ("pending", "success", "error", "failure", "warning", "skipped")


@dataclass(frozen=True)
class RefUpdate:
    old: str
    new: str
    ref: str

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None


class Sim:
    def __init__(self, data_dir: Path, admin_token: str, flavour: str = "gitea") -> None:
        if flavour not in ("gitea", "forgejo"):
            raise ValueError("flavour must be gitea or forgejo")
        self.flavour = flavour
        self.state = State(data_dir, flavour)
        self.base_url = "http://127.0.0.1"
        self.internal_secret = secrets.token_hex(16)
        self.perms = Perms(self.state)
        self.faults = Faults()
        self.log = EventLog()
        self.webhooks = Webhooks(self)
        self.payloads = Payloads(self)
        self.pulls = PullService(self)
        self.ci = CIRunner(self)
        self.features: dict[str, bool] = {"actions_rerun": False}  # PUT /_sim/features
        self._ser: Serializer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        admin = self.create_user("admin", "admin@sim.invalid", password="admin-password", is_admin=True)
        self.add_token(admin, "admin", admin_token, ["all"])

    @property
    def ser(self) -> Serializer:
        if self._ser is None or self._ser.base_url != self.base_url:
            self._ser = Serializer(self.state, self.base_url)
        return self._ser

    @property
    def version(self) -> str:
        if self.flavour == "forgejo":
            return "11.0.3+gitea-1.22.0"
        return "1.26.0" if self.features["actions_rerun"] else "1.25.4"

    def git(self, repo: Repo) -> GitRepo:
        return GitRepo(repo.path)

    # --- background work ---
    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name or None)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())
            self.log.add("error", task=task.get_name(), error=repr(task.exception()))

    async def wait_idle(self, within_s: float = 30.0) -> None:
        """Wait until no background work (checks, CI, auto-merges, deliveries) is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            pending = [t for t in self._tasks if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=max(deadline - loop.time(), 0.01))
            await self.webhooks.wait_idle(max(deadline - loop.time(), 0.01))
            if not [t for t in self._tasks if not t.done()]:
                return
            if loop.time() > deadline:
                raise TimeoutError("simulator did not become idle")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.ci.close()
        await self.webhooks.close()

    # --- users and tokens ---
    def create_user(self, login: str, email: str, password: str = "", is_admin: bool = False,
                    full_name: str = "", is_org: bool = False, visibility: str = "public") -> User:
        user = User(id=self.state.next_id("user"), login=login, email=email, password=password,
                    is_admin=is_admin, full_name=full_name, is_org=is_org, visibility=visibility)
        self.state.users[user.id] = user
        return user

    def add_token(self, user: User, name: str, sha1: str | None = None, scopes: list[str] | None = None) -> Token:
        token = Token(id=self.state.next_id("token"), user_id=user.id, name=name,
                      sha1=sha1 or secrets.token_hex(20), scopes=scopes or ["all"])
        self.state.tokens[token.sha1] = token
        return token

    def ci_user(self) -> User:
        user = self.state.user_by_name("ci")
        return user or self.create_user("ci", "ci@sim.invalid", full_name="Simulated CI")

    # --- repositories ---
    async def create_repo(self, owner: User, name: str, *, description: str = "", private: bool = False,
                          auto_init: bool = False, default_branch: str = "", readme: str = "",
                          creator: User | None = None) -> Repo:
        branch = default_branch or "main"
        path = self.state.data_dir / "repos" / owner.login.lower() / f"{name.lower()}.git"
        repo = Repo(id=self.state.next_id("repo"), owner_id=owner.id, name=name, path=path,
                    description=description, private=private, default_branch=branch,
                    settings=dict(DEFAULT_REPO_SETTINGS))
        git = self.git(repo)
        await git.init(branch)
        from .githttp import install_hooks

        install_hooks(self, repo)
        if auto_init:
            who = creator or owner
            ident = Ident(who.full_name or who.login, who.email)
            text = readme or f"# {name}\n\n{description}\n"
            await git.write_initial_commit(branch, {"README.md": text}, "Initial commit\n", ident)
        else:
            repo.settings["_empty"] = True
        self.state.repos[repo.id] = repo
        return repo

    # --- pushes (git smart HTTP post-receive, and the simulator's own ref moves) ---
    async def on_push(self, repo: Repo, pusher: User, updates: list[RefUpdate]) -> None:
        """What Gitea's push queue does after refs moved: push webhook, PR sync, rechecks, CI."""
        git = self.git(repo)
        repo.settings.pop("_empty", None)
        repo.updated_at = utcnow()
        for up in updates:
            branch = up.branch
            if branch is None:
                continue
            self.log.add("push", repo=self.state.repo_full_name(repo), ref=up.ref, before=up.old, after=up.new,
                         pusher=pusher.login)
            if up.new == ZERO_SHA:
                continue
            if up.old == ZERO_SHA:
                others = [f"^{sha}" for name, sha in (await git.branches()).items() if name != branch]
                commits = await git.commits(up.new, *others)
            else:
                commits = await git.commits(f"{up.old}..{up.new}")
            if not commits:
                info = await git.commit(up.new)
                head = [info] if info else []
            else:
                head = commits
            payload = self.payloads.push(repo, up.ref, up.old, up.new, commits, pusher)
            if not commits and head:
                payload["head_commit"] = self.ser.payload_commit(repo, head[0])
            self.webhooks.emit(repo, "push", payload, branch=branch)
            await self.pulls.on_branch_moved(repo, branch, up.old, up.new, pusher)
            self.ci.on_push(repo, branch, up.new)

    # --- commit statuses ---
    async def add_status(self, repo: Repo, sha: str, state: str, context: str, description: str,
                         target_url: str, creator: User) -> CommitStatus:
        existing = repo.statuses.setdefault(sha, [])
        st = CommitStatus(id=self.state.next_id("status"), index=len(existing) + 1, sha=sha, state=state,
                          context=context or "default", description=description, target_url=target_url,
                          creator_id=creator.id)
        existing.append(st)
        commit = await self.git(repo).commit(sha)
        if commit is not None:
            self.webhooks.emit(repo, "status", self.payloads.status(repo, st, commit, creator))
        self.pulls.on_status(repo, sha)
        return st

    def add_event(self, issue_id: int, type_: str, user: User, **extra: Any) -> TimelineEvent:
        """A timeline entry. Gitea stores it as a comment of its type, and ``CreateComment`` bumps the issue's
        ``updated_unix`` for every comment of every type (models/issues/comment.go, ``updateCommentInfos``):
        a label, a push to the head, a close, a scheduled merge all make the PR "updated"."""
        issue = self.state.issues_by_id[issue_id]
        event = TimelineEvent(id=self.state.next_id("comment"), type=type_, user_id=user.id, **extra)
        issue.events.append(event)
        issue.updated_at = utcnow()
        return event


def latest_statuses(statuses: list[CommitStatus]) -> list[CommitStatus]:
    """The newest status of each context, newest first (Gitea's GetLatestCommitStatus)."""
    seen: dict[str, CommitStatus] = {}
    for st in statuses:
        seen[st.context] = st
    return sorted(seen.values(), key=lambda s: s.id, reverse=True)


def combined_state(statuses: list[CommitStatus]) -> str:
    """CalcCommitStatus: any error/failure -> failure... as Gitea 1.25 folds states."""
    if not statuses:
        return ""
    states = {s.state for s in statuses}
    if states & {"error", "failure"}:
        return "failure"
    if "pending" in states:
        return "pending"
    if states <= {"success", "warning", "skipped"}:
        return "success"
    return "pending"


def has_access(sim: Sim, repo: Repo, user: User, needed: Access) -> bool:
    return sim.perms.access(repo, user) >= needed
