"""Who may do what: repository access levels and branch-protection decisions, as Gitea computes them."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

from .model import Access, Protection, Repo, State, User


def branch_glob(pattern: str) -> re.Pattern[str]:
    """Gitea compiles protected-branch rule names with '/' as separator: `*` stays within a segment."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append({"*": "[^/]*", "?": "[^/]"}.get(ch, re.escape(ch)))
        i += 1
    return re.compile("".join(out) + r"\Z")


def context_matches(pattern: str, context: str) -> bool:
    """Status-check context patterns are globs without separators (Gitea >= 1.20)."""
    return fnmatchcase(context, pattern)


class Perms:
    def __init__(self, state: State) -> None:
        self.state = state

    def access(self, repo: Repo, user: User | None) -> Access:
        if user is None:
            return Access.NONE if repo.private else Access.READ
        if user.is_admin:
            return Access.OWNER
        if user.id == repo.owner_id:
            return Access.OWNER
        owner = self.state.users[repo.owner_id]
        if owner.is_org and user.id in owner.org_owners:
            return Access.OWNER
        level = repo.collaborators.get(user.id, Access.NONE)
        if level == Access.NONE and not repo.private:
            level = Access.READ
        return level

    def protection_for(self, repo: Repo, branch: str) -> Protection | None:
        """Gitea's GetFirstMatchProtectedBranchRule: an exact rule name wins, then globs by priority."""
        for p in repo.protections:
            if p.rule_name == branch:
                return p
        globs = [p for p in repo.protections if any(c in p.rule_name for c in "*?[")]
        globs.sort(key=lambda p: int(p.opts.get("priority", 0) or 0))
        for p in globs:
            if branch_glob(p.rule_name).match(branch):
                return p
        return None

    def can_push(self, repo: Repo, prot: Protection, user: User) -> bool:
        """ProtectedBranch.CanUserPush."""
        if not prot.flag("enable_push"):
            return False
        if not prot.flag("enable_push_whitelist"):
            return self.access(repo, user) >= Access.WRITE
        return user.login.lower() in {n.lower() for n in prot.names("push_whitelist_usernames")}

    def can_force_push(self, repo: Repo, prot: Protection, user: User) -> bool:
        if not prot.flag("enable_force_push"):
            return False
        if not prot.flag("enable_force_push_allowlist"):
            return self.can_push(repo, prot, user) or self.access(repo, user) >= Access.WRITE
        return user.login.lower() in {n.lower() for n in prot.names("force_push_allowlist_usernames")}

    def can_merge(self, repo: Repo, branch: str, user: User) -> bool:
        """IsUserAllowedToMerge: write access, or on the merge whitelist when one is enabled."""
        access = self.access(repo, user)
        prot = self.protection_for(repo, branch)
        if prot is not None and prot.flag("enable_merge_whitelist"):
            return user.login.lower() in {n.lower() for n in prot.names("merge_whitelist_usernames")}
        return access >= Access.WRITE
