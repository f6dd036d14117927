"""Forks (services/repository/fork.go) and PRs whose head lives in a fork (services/pull).

A fork is a bare `git clone` of its parent (same history, its own refs). A PR from a fork keeps its head in the
fork; the base repository holds the head commit under `refs/pull/N/head`, written by fetching from the fork on
creation and whenever the fork's branch moves (Gitea pushes it there: services/pull/pull.go PushToBaseRepo), so
mergeability checks and merges run in the base repository as for any PR.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .gitrepo import GitRepo, run_git
from .model import DEFAULT_REPO_SETTINGS, Access, Issue, Repo, User
from .web import ApiError, not_found

if TYPE_CHECKING:
    from .core import Sim


async def fork_repo(sim: Sim, base: Repo, owner: User, name: str) -> Repo:
    """ForkRepository: 409 when `owner` already has a fork of `base` or a repository called `name`."""
    state = sim.state
    existing = next((r for r in state.forks_of(base) if r.owner_id == owner.id), None)
    if existing is not None:
        raise ApiError(409, f"repository is already forked by user [uname: {owner.login}, repo path: "
                            f"{state.repo_full_name(base)}, fork path: {state.repo_full_name(existing)}]")
    if state.repo_by_name(owner.login, name) is not None:
        raise ApiError(409, f"repository already exists [uname: {owner.login}, name: {name}]")
    path = state.data_dir / "repos" / owner.login.lower() / f"{name.lower()}.git"
    path.parent.mkdir(parents=True, exist_ok=True)
    await run_git(["clone", "--bare", "--quiet", "--no-tags", str(base.path), str(path)])
    fork = Repo(id=state.next_id("repo"), owner_id=owner.id, name=name, path=path, description=base.description,
                private=base.private, default_branch=base.default_branch, settings=dict(DEFAULT_REPO_SETTINGS),
                fork_of=base.id)
    git = GitRepo(path)
    await git.git("remote", "remove", "origin")
    await git.configure()
    from .githttp import install_hooks

    install_hooks(sim, fork)
    if base.settings.get("_empty"):
        fork.settings["_empty"] = True
    state.repos[fork.id] = fork
    return fork


def head_repo_for(sim: Sim, base: Repo, doer: User, head_owner: str) -> Repo:
    """The repository `head: "owner:branch"` names (routers/api/v1/repo/pull.go parseCompareInfo): the base
    repository for its own owner, else that owner's fork of it, else the base's parent when that owner owns it;
    404 otherwise, or when the doer cannot read it."""
    state = sim.state
    user = state.user_by_name(head_owner)
    if user is None:
        raise not_found("GetUserByName")
    if user.id == base.owner_id:
        return base
    head = next((r for r in state.forks_of(base) if r.owner_id == user.id), None)
    if head is None and base.fork_of is not None:
        parent = state.repos.get(base.fork_of)
        if parent is not None and parent.owner_id == user.id:
            head = parent
    if head is None:
        raise not_found("GetBaseRepo")
    if sim.perms.access(head, doer) < Access.READ:
        raise not_found("GetUserRepoPermission")
    return head


async def fetch_head(sim: Sim, base: Repo, issue: Issue, head: Repo, sha: str) -> None:
    """Copy the fork's head commit into the base repository as refs/pull/N/head."""
    await sim.git(base).git("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", str(head.path),
                            f"+{sha}:refs/pull/{issue.index}/head")
