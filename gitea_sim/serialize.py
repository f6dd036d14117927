"""Model -> API JSON, in the shapes of Gitea 1.25's modules/structs (field names and order as Gitea emits them)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from .gitrepo import CommitInfo
from .model import (
    ACCESS_NAMES,
    Access,
    Comment,
    CommitStatus,
    Hook,
    Issue,
    Label,
    Protection,
    Reaction,
    Repo,
    State,
    TimelineEvent,
    Token,
    User,
)

JSON = dict[str, Any]
ZERO_TIME = "0001-01-01T00:00:00Z"
EPOCH_TIME = "1970-01-01T00:00:00Z"


def ts(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def tss(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


class Serializer:
    def __init__(self, state: State, base_url: str) -> None:
        self.state = state
        self.base_url = base_url.rstrip("/")
        self.forgejo = state.flavour == "forgejo"

    # --- users ---
    def user(self, u: User) -> JSON:
        avatar = hashlib.md5(u.email.lower().encode()).hexdigest()
        return {
            "id": u.id, "login": u.login, "login_name": "", "source_id": 0, "full_name": u.full_name,
            "email": u.email, "avatar_url": f"{self.base_url}/avatars/{avatar}",
            "html_url": f"{self.base_url}/{u.login}", "language": "", "is_admin": u.is_admin,
            "last_login": ZERO_TIME, "created": tss(u.created), "restricted": False, "active": True,
            "prohibit_login": False, "location": u.location, "website": u.website, "description": u.description,
            "visibility": u.visibility, "followers_count": 0, "following_count": 0, "starred_repos_count": 0,
            "username": u.login,
        } | ({"pronouns": ""} if self.forgejo else {})

    def user_id(self, uid: int | None) -> JSON | None:
        return self.user(self.state.users[uid]) if uid is not None else None

    def org(self, u: User) -> JSON:
        avatar = hashlib.md5(u.email.lower().encode()).hexdigest()
        return {"id": u.id, "name": u.login, "full_name": u.full_name, "email": u.email,
                "avatar_url": f"{self.base_url}/avatars/{avatar}", "description": u.description,
                "website": u.website, "location": u.location, "visibility": u.visibility,
                "repo_admin_change_team_access": False, "username": u.login}

    def token(self, t: Token, with_secret: bool) -> JSON:
        return {"id": t.id, "name": t.name, "sha1": t.sha1 if with_secret else "",
                "token_last_eight": t.sha1[-8:], "scopes": t.scopes, "created_at": tss(t.created_at),
                "last_used_at": ZERO_TIME}

    # --- repositories ---
    def repo_html(self, repo: Repo) -> str:
        return f"{self.base_url}/{self.state.repo_full_name(repo)}"

    def repo_api(self, repo: Repo) -> str:
        return f"{self.base_url}/api/v1/repos/{self.state.repo_full_name(repo)}"

    def repo(self, repo: Repo, access: Access | None = None, *, with_parent: bool = True) -> JSON:
        s = repo.settings
        owner = self.state.users[repo.owner_id]
        full = self.state.repo_full_name(repo)
        host = self.base_url.split("://", 1)[-1].split("/", 1)[0].split(":")[0]
        open_issues = sum(1 for i in repo.issues.values() if not i.is_pull and i.state == "open")
        open_pulls = sum(1 for i in repo.issues.values() if i.is_pull and i.state == "open")
        data: JSON = {
            "id": repo.id, "owner": self.user(owner), "name": repo.name, "full_name": full,
            "description": repo.description, "empty": bool(s.get("_empty", False)), "private": repo.private,
            "fork": repo.fork_of is not None, "template": bool(s["template"]),
        }
        parent = self.state.repos.get(repo.fork_of) if repo.fork_of is not None else None
        if parent is not None and with_parent:  # Repository.parent is omitempty; a parent carries no parent
            data["parent"] = self.repo(parent, access, with_parent=False)
        data |= {
            "mirror": False, "size": 0, "language": "",
            "languages_url": f"{self.repo_api(repo)}/languages", "html_url": self.repo_html(repo),
            "url": self.repo_api(repo), "link": "", "ssh_url": f"git@{host}:{full}.git",
            "clone_url": f"{self.repo_html(repo)}.git", "original_url": "", "website": s["website"],
            "stars_count": 0, "forks_count": len(self.state.forks_of(repo)), "watchers_count": 1,
            "open_issues_count": open_issues,
            "open_pr_counter": open_pulls, "release_counter": 0, "default_branch": repo.default_branch,
            "archived": bool(s["archived"]), "created_at": tss(repo.created_at),
            "updated_at": tss(repo.updated_at), "archived_at": EPOCH_TIME,
        }
        if access is not None:
            data["permissions"] = {"admin": access >= Access.ADMIN, "push": access >= Access.WRITE,
                                   "pull": access >= Access.READ}
        data.update({
            "has_code": True, "has_issues": s["has_issues"],
            "internal_tracker": {"enable_time_tracker": True, "allow_only_contributors_to_track_time": True,
                                 "enable_issue_dependencies": bool(s["enable_issue_dependencies"])},
            "has_wiki": s["has_wiki"], "has_pull_requests": s["has_pull_requests"],
            "has_projects": s["has_projects"], "projects_mode": "all", "has_releases": s["has_releases"],
            "has_packages": s["has_packages"], "has_actions": s["has_actions"],
        })
        for key in ("ignore_whitespace_conflicts", "allow_merge_commits", "allow_rebase", "allow_rebase_explicit",
                    "allow_squash_merge", "allow_fast_forward_only_merge", "allow_rebase_update",
                    "allow_manual_merge", "autodetect_manual_merge", "default_delete_branch_after_merge",
                    "default_merge_style", "default_allow_maintainer_edit"):
            data[key] = s[key]
        data.update({"avatar_url": "", "internal": False, "mirror_interval": "", "object_format_name": "sha1",
                     "mirror_updated": ZERO_TIME, "topics": self.repo_topics(repo),
                     "licenses": []})
        if self.forgejo:  # fields only Forgejo's structs have
            data.update({"wiki_branch": repo.default_branch, "globally_editable_wiki": False,
                         "default_update_style": "merge"})
        return data

    def repo_topics(self, repo: Repo) -> list[str]:
        """Repository.Topics as syncTopicsInRepository stores it: most used topic first."""
        return sorted(repo.topics, key=lambda t: (-self.state.topic_count(t), self.state.topic_ids.get(t, 0)))

    def repo_meta(self, repo: Repo) -> JSON:
        return {"id": repo.id, "name": repo.name, "owner": self.state.users[repo.owner_id].login,
                "full_name": self.state.repo_full_name(repo)}

    # --- labels, protections, hooks ---
    def label(self, repo: Repo, label: Label) -> JSON:
        return {"id": label.id, "name": label.name, "exclusive": label.exclusive,
                "is_archived": label.is_archived, "color": label.color.lstrip("#"),
                "description": label.description, "url": f"{self.repo_api(repo)}/labels/{label.id}"}

    def protection(self, p: Protection) -> JSON:
        o = p.opts
        data: JSON = {"branch_name": p.rule_name, "rule_name": p.rule_name, "priority": o.get("priority", 0)}
        for key in ("enable_push", "enable_push_whitelist"):
            data[key] = bool(o.get(key, False))
        data["push_whitelist_usernames"] = p.names("push_whitelist_usernames")
        data["push_whitelist_teams"] = p.names("push_whitelist_teams")
        data["push_whitelist_deploy_keys"] = bool(o.get("push_whitelist_deploy_keys", False))
        data["enable_force_push"] = bool(o.get("enable_force_push", False))
        data["enable_force_push_allowlist"] = bool(o.get("enable_force_push_allowlist", False))
        data["force_push_allowlist_usernames"] = p.names("force_push_allowlist_usernames")
        data["force_push_allowlist_teams"] = p.names("force_push_allowlist_teams")
        data["force_push_allowlist_deploy_keys"] = bool(o.get("force_push_allowlist_deploy_keys", False))
        data["enable_merge_whitelist"] = bool(o.get("enable_merge_whitelist", False))
        data["merge_whitelist_usernames"] = p.names("merge_whitelist_usernames")
        data["merge_whitelist_teams"] = p.names("merge_whitelist_teams")
        data["enable_status_check"] = bool(o.get("enable_status_check", False))
        data["status_check_contexts"] = p.names("status_check_contexts")
        data["required_approvals"] = int(o.get("required_approvals", 0) or 0)
        data["enable_approvals_whitelist"] = bool(o.get("enable_approvals_whitelist", False))
        data["approvals_whitelist_username"] = p.names("approvals_whitelist_username")
        data["approvals_whitelist_teams"] = p.names("approvals_whitelist_teams")
        for key in ("block_on_rejected_reviews", "block_on_official_review_requests", "block_on_outdated_branch",
                    "dismiss_stale_approvals", "ignore_stale_approvals", "require_signed_commits",
                    "block_admin_merge_override"):
            data[key] = bool(o.get(key, False))
        data["protected_file_patterns"] = str(o.get("protected_file_patterns", "") or "")
        data["unprotected_file_patterns"] = str(o.get("unprotected_file_patterns", "") or "")
        data["created_at"] = tss(p.created_at)
        data["updated_at"] = tss(p.updated_at)
        return data

    def hook(self, h: Hook) -> JSON:
        return {"id": h.id, "type": h.type, "branch_filter": h.branch_filter,
                "config": {"content_type": h.content_type, "url": h.url, "http_method": h.http_method},
                "events": list(h.events), "authorization_header": h.authorization_header, "active": h.active,
                "updated_at": tss(h.updated_at), "created_at": tss(h.created_at)}

    # --- issues, pulls, comments ---
    def labels_of(self, repo: Repo, issue: Issue) -> list[JSON]:
        return [self.label(repo, repo.labels[i]) for i in issue.label_ids if i in repo.labels]

    def issue_html(self, repo: Repo, issue: Issue) -> str:
        return f"{self.repo_html(repo)}/{'pulls' if issue.is_pull else 'issues'}/{issue.index}"

    def issue(self, repo: Repo, issue: Issue) -> JSON:
        data: JSON = {
            "id": issue.id, "url": f"{self.repo_api(repo)}/issues/{issue.index}",
            "html_url": self.issue_html(repo, issue), "number": issue.index,
            "user": self.user_id(issue.poster_id), "original_author": "", "original_author_id": 0,
            "title": issue.title, "body": issue.body, "ref": "", "assets": [], "labels": self.labels_of(repo, issue),
            "milestone": None, "assignee": None, "assignees": None, "state": issue.state, "is_locked": False,
            "comments": len(issue.comments), "created_at": tss(issue.created_at),
            "updated_at": tss(issue.updated_at), "closed_at": ts(issue.closed_at), "due_date": None,
            "time_estimate": 0,
        }
        data["pull_request"] = None
        if issue.pr is not None:
            data["pull_request"] = {"merged": issue.pr.merged, "merged_at": ts(issue.pr.merged_at),
                                    "draft": is_draft(issue.title), "html_url": self.issue_html(repo, issue)}
        data["repository"] = self.repo_meta(repo)
        data["pin_order"] = 0
        return data

    def pull(self, repo: Repo, issue: Issue, access: Access | None = None,
             changed_files: int = 0) -> JSON:
        pr = issue.pr
        assert pr is not None
        repo_json = self.repo(repo, access)
        head_repo = self.state.head_repo(repo, pr)
        # Gitea gives the head repository with the doer's permission there; the base access stands in for it.
        head_json = repo_json if head_repo is repo else self.repo(head_repo, access)
        html = self.issue_html(repo, issue)
        return {
            "id": issue.id, "url": html, "number": issue.index, "user": self.user_id(issue.poster_id),
            "title": issue.title, "body": issue.body, "labels": self.labels_of(repo, issue), "milestone": None,
            "assignee": None, "assignees": None, "requested_reviewers": None, "requested_reviewers_teams": None,
            "state": issue.state, "draft": is_draft(issue.title), "is_locked": False,
            "comments": len(issue.comments), "review_comments": 0, "additions": 0, "deletions": 0,
            "changed_files": changed_files, "html_url": html, "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "mergeable": pr.status not in ("checking", "conflict", "error") and not is_draft(issue.title),
            "merged": pr.merged, "merged_at": ts(pr.merged_at), "merge_commit_sha": pr.merge_commit_sha,
            "merged_by": self.user_id(pr.merged_by_id), "allow_maintainer_edit": pr.allow_maintainer_edit,
            "base": {"label": pr.base_branch, "ref": pr.base_branch, "sha": pr.base_sha,
                     "repo_id": repo.id, "repo": repo_json},
            "head": {"label": pr.head_branch, "ref": pr.head_branch, "sha": pr.head_sha, "repo_id": head_repo.id,
                     "repo": head_json},
            "merge_base": pr.merge_base, "due_date": None, "created_at": tss(issue.created_at),
            "updated_at": tss(issue.updated_at), "closed_at": ts(issue.closed_at), "pin_order": 0,
        } | ({"flow": 0} if self.forgejo else {})

    def comment(self, repo: Repo, issue: Issue, c: Comment) -> JSON:
        html = self.issue_html(repo, issue)
        return {
            "id": c.id, "html_url": f"{html}#issuecomment-{c.id}",
            "pull_request_url": html if issue.is_pull else "", "issue_url": "" if issue.is_pull else html,
            "user": self.user_id(c.user_id), "original_author": "", "original_author_id": 0, "body": c.body,
            "assets": [], "created_at": tss(c.created_at), "updated_at": tss(c.updated_at),
        }

    def reaction(self, r: Reaction) -> JSON:
        return {"user": self.user_id(r.user_id), "content": r.content, "created_at": tss(r.created_at)}

    def timeline_comment(self, repo: Repo, issue: Issue, c: Comment) -> JSON:
        data = self._timeline_base(repo, issue, c.id, "comment", c.user_id, c.created_at, c.body)
        data["updated_at"] = tss(c.updated_at)
        return data

    def timeline_event(self, repo: Repo, issue: Issue, e: TimelineEvent) -> JSON:
        data = self._timeline_base(repo, issue, e.id, e.type, e.user_id, e.created_at, e.body)
        if e.label_id is not None and e.label_id in repo.labels:
            data["label"] = self.label(repo, repo.labels[e.label_id])
        if e.dependent_issue_id is not None and e.dependent_issue_id in self.state.issues_by_id:
            dep = self.state.issues_by_id[e.dependent_issue_id]
            data["dependent_issue"] = self.issue(self.state.repos[dep.repo_id], dep)
        if e.ref_commit_sha:
            data["ref_commit_sha"] = e.ref_commit_sha
        data["old_ref"], data["new_ref"] = e.old_ref, e.new_ref
        return data

    def _timeline_base(self, repo: Repo, issue: Issue, cid: int, type_: str, uid: int, created: datetime,
                       body: str) -> JSON:
        html = self.issue_html(repo, issue)
        return {
            "id": cid, "type": type_, "html_url": f"{html}#issuecomment-{cid}",
            "pull_request_url": html if issue.is_pull else "", "issue_url": "" if issue.is_pull else html,
            "user": self.user_id(uid), "body": body, "created_at": tss(created), "updated_at": tss(created),
            "old_project_id": 0, "project_id": 0, "old_title": "", "new_title": "", "old_ref": "", "new_ref": "",
            "ref_action": "", "ref_commit_sha": "", "review_id": 0, "removed_assignee": False,
        }

    # --- statuses, commits, branches ---
    def status(self, repo: Repo, s: CommitStatus) -> JSON:
        return {"id": s.id, "status": s.state, "target_url": s.target_url, "description": s.description,
                "url": f"{self.repo_api(repo)}/statuses/{s.sha}", "context": s.context,
                "creator": self.user_id(s.creator_id), "created_at": tss(s.created_at),
                "updated_at": tss(s.updated_at)}

    def payload_commit(self, repo: Repo, c: CommitInfo) -> JSON:
        def who(name: str, email: str) -> JSON:
            found = next((u for u in self.state.users.values() if u.email.lower() == email.lower()), None)
            return {"name": name, "email": email, "username": found.login if found else ""}

        return {"id": c.sha, "message": c.message, "url": f"{self.repo_html(repo)}/commit/{c.sha}",
                "author": who(c.author.name, c.author.email),
                "committer": who(c.committer.name, c.committer.email), "verification": None,
                "timestamp": c.committer.date, "added": c.added, "removed": c.removed, "modified": c.modified}

    def branch(self, repo: Repo, name: str, commit: CommitInfo, prot: Protection | None, can_push: bool,
               can_merge: bool) -> JSON:
        return {"name": name, "commit": self.payload_commit(repo, commit), "protected": prot is not None,
                "required_approvals": int(prot.opts.get("required_approvals", 0) or 0) if prot else 0,
                "enable_status_check": prot.flag("enable_status_check") if prot else False,
                "status_check_contexts": prot.names("status_check_contexts") if prot else [],
                "user_can_push": can_push, "user_can_merge": can_merge,
                "effective_branch_protection_name": prot.rule_name if prot else ""}

    def commit(self, repo: Repo, c: CommitInfo) -> JSON:
        api = self.repo_api(repo)
        return {
            "url": f"{api}/git/commits/{c.sha}", "sha": c.sha, "created": c.committer.date,
            "html_url": f"{self.repo_html(repo)}/commit/{c.sha}",
            "commit": {
                "url": f"{api}/git/commits/{c.sha}",
                "author": {"name": c.author.name, "email": c.author.email, "date": c.author.date},
                "committer": {"name": c.committer.name, "email": c.committer.email, "date": c.committer.date},
                "message": c.message, "tree": {"url": f"{api}/git/trees/{c.tree}", "sha": c.tree,
                                               "created": c.committer.date},
                "verification": {"verified": False, "reason": "gpg.error.not_signed_commit", "signature": "",
                                 "signer": None, "payload": ""},
            },
            "author": None, "committer": None,
            "parents": [{"url": f"{api}/git/commits/{p}", "sha": p, "created": c.committer.date}
                        for p in c.parents],
            "files": [{"filename": f, "status": st} for st, files in
                      (("added", c.added), ("removed", c.removed), ("modified", c.modified)) for f in files],
            "stats": {"total": 0, "additions": 0, "deletions": 0},
        }

    def permission(self, u: User, access: Access) -> JSON:
        name = ACCESS_NAMES[access]
        return {"permission": name, "role_name": name, "user": self.user(u)}


def is_draft(title: str) -> bool:
    """Gitea's WIP prefixes (setting.Repository.PullRequest.WorkInProgressPrefixes)."""
    upper = title.upper()
    return upper.startswith("WIP:") or upper.startswith("[WIP]")
