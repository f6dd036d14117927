"""Pull requests: mergeability checks, merges in every style, update, scheduled merge (services/pull, automerge)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .gitrepo import ZERO_SHA, GitError, GitRepo, Ident
from .model import Access, Issue, PullRequest, Repo, ScheduledMerge, User, utcnow
from .perms import context_matches
from .serialize import is_draft
from .web import ApiError

if TYPE_CHECKING:
    from .core import Sim

MERGE_STYLES = ("merge", "rebase", "rebase-merge", "squash", "fast-forward-only", "manually-merged")
STYLE_SETTING = {"merge": "allow_merge_commits", "rebase": "allow_rebase", "rebase-merge": "allow_rebase_explicit",
                 "squash": "allow_squash_merge", "fast-forward-only": "allow_fast_forward_only_merge",
                 "manually-merged": "allow_manual_merge"}


@dataclass
class MergeRequest:
    style: str
    head_commit_id: str = ""
    title: str = ""
    message: str = ""
    merge_commit_id: str = ""
    force_merge: bool = False
    delete_branch: bool = False
    when_checks_succeed: bool = False


class Conflict(Exception):
    def __init__(self, style: str, files: list[str], commit: str = "") -> None:
        super().__init__(f"conflict in {files}")
        self.style = style
        self.files = files
        self.commit = commit


def ident(user: User) -> Ident:
    return Ident(user.full_name or user.login, user.email)


class PullService:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim

    # --- lifecycle ---
    async def create(self, repo: Repo, poster: User, head: str, base: str, title: str, body: str,
                     label_ids: list[int], head_repo: Repo | None = None) -> Issue:
        """A PR into `repo`; `head_repo` is the fork holding the head branch (default: `repo` itself)."""
        from .forks import fetch_head

        head_repo = head_repo or repo
        git = self.sim.git(repo)
        head_sha = await self.sim.git(head_repo).branch_sha(head)
        base_sha = await git.branch_sha(base)
        if head_sha is None or base_sha is None:
            raise ApiError(404, "", not_found=True)
        for other in repo.pulls():
            pr = other.pr
            assert pr is not None
            if other.state == "open" and pr.head_branch == head and pr.base_branch == base \
                    and (pr.head_repo_id or repo.id) == head_repo.id:
                raise ApiError(409, f"pull request already exists for these targets [id: {other.id}, issue_id: "
                                    f"{other.id}, head_repo_id: {head_repo.id}, base_repo_id: {repo.id}, "
                                    f"head_branch: {head}, base_branch: {base}]")
        if head == base and head_repo is repo:
            raise ApiError(422, "Invalid PullRequest: There are no changes between the head and the base")
        issue = self.new_issue(repo, poster, title, body, is_pull=True)
        issue.label_ids = [i for i in label_ids if i in repo.labels]
        if head_repo is repo:
            await git.update_ref(f"refs/pull/{issue.index}/head", head_sha)
        else:
            await fetch_head(self.sim, repo, issue, head_repo, head_sha)
        issue.pr = PullRequest(head_branch=head, base_branch=base, head_sha=head_sha, base_sha=base_sha,
                               merge_base=await git.merge_base(base_sha, head_sha) or "",
                               allow_maintainer_edit=bool(repo.settings["default_allow_maintainer_edit"]),
                               head_repo_id=None if head_repo is repo else head_repo.id)
        self.schedule_check(repo, issue)
        self.sim.webhooks.emit(repo, "pull_request",
                               self.sim.payloads.pull_request("opened", repo, issue, poster), branch=base)
        return issue

    def new_issue(self, repo: Repo, poster: User, title: str, body: str, is_pull: bool) -> Issue:
        state = self.sim.state
        issue = Issue(id=state.next_id("issue"), repo_id=repo.id, index=repo.next_index, poster_id=poster.id,
                      title=title, body=body, is_pull=is_pull)
        repo.next_index += 1
        repo.issues[issue.index] = issue
        state.issues_by_id[issue.id] = issue
        return issue

    def set_state(self, repo: Repo, issue: Issue, doer: User, state: str) -> None:
        if issue.state == state:
            return
        issue.state = state
        issue.updated_at = utcnow()
        issue.closed_at = utcnow() if state == "closed" else None
        self.sim.add_event(issue.id, "close" if state == "closed" else "reopen", doer)
        if issue.pr is not None:
            action = "closed" if state == "closed" else "reopened"
            self.sim.webhooks.emit(repo, "pull_request", self.sim.payloads.pull_request(action, repo, issue, doer),
                                   branch=issue.pr.base_branch)
            if state == "open":
                self.schedule_check(repo, issue)

    # --- mergeability (services/pull/check.go testPR) ---
    def schedule_check(self, repo: Repo, issue: Issue) -> None:
        pr = issue.pr
        assert pr is not None
        if pr.merged or issue.state != "open":
            return
        pr.status = "checking"
        pr.check_generation += 1
        self.sim.spawn(self._check(repo, issue, pr.check_generation), name=f"check-pr-{issue.id}")

    async def _check(self, repo: Repo, issue: Issue, generation: int) -> None:
        delay = self.sim.faults.merge_check_delay()
        if delay:
            await asyncio.sleep(delay)
        pr = issue.pr
        assert pr is not None
        git = self.sim.git(repo)
        base_sha = await git.branch_sha(pr.base_branch)
        head_sha = pr.head_sha
        status, merge_base = "error", ""
        files: list[str] = []
        if base_sha is not None:
            merge_base = await git.merge_base(base_sha, head_sha) or ""
            if await git.is_ancestor(head_sha, base_sha):
                status = "empty"
            else:
                try:
                    tree, files = await git.merge_tree(base_sha, head_sha)
                    status = "mergeable" if tree else "conflict"
                except GitError:
                    status = "error"
        if generation != pr.check_generation or pr.merged:
            return
        pr.status, pr.conflicted_files, pr.merge_base = status, files, merge_base
        if base_sha:
            pr.base_sha = base_sha
        if status in ("mergeable", "empty"):
            await self.try_auto_merge(repo, issue)

    # --- reacting to ref moves and statuses ---
    def _pulls_touching(self, repo: Repo) -> list[tuple[Repo, Issue]]:
        """(base repository, PR) for the PRs into `repo` and the PRs whose head lives in `repo` (a fork)."""
        found = [(repo, issue) for issue in repo.pulls()]
        for base in self.sim.state.repos.values():
            if base is not repo:
                found += [(base, i) for i in base.pulls() if i.pr is not None and i.pr.head_repo_id == repo.id]
        return found

    async def on_branch_moved(self, repo: Repo, branch: str, old: str, new: str, pusher: User) -> None:
        from .forks import fetch_head

        git = self.sim.git(repo)
        for base, issue in self._pulls_touching(repo):
            pr = issue.pr
            assert pr is not None
            if issue.state != "open" or pr.merged:
                continue
            head_here = (pr.head_repo_id or base.id) == repo.id
            if head_here and pr.head_branch == branch and new != ZERO_SHA and pr.head_sha != new:
                pr.head_sha = new
                issue.updated_at = utcnow()
                if base is repo:
                    await git.update_ref(f"refs/pull/{issue.index}/head", new)
                else:
                    await fetch_head(self.sim, base, issue, repo, new)
                self.sim.add_event(issue.id, "pull_push", pusher, body="", ref_commit_sha=new)
                self._dismiss_stale_reviews(base, issue)
                self.sim.webhooks.emit(base, "pull_request_sync",
                                       self.sim.payloads.pull_request("synchronized", base, issue, pusher),
                                       branch=pr.base_branch)
                self.schedule_check(base, issue)
            elif base is repo and pr.base_branch == branch and new != ZERO_SHA:
                pr.base_sha = new
                if repo.settings["autodetect_manual_merge"] and await git.is_ancestor(pr.head_sha, new):
                    await self._mark_merged(repo, issue, pusher, pr.head_sha, emit=True)
                    continue
                self.schedule_check(repo, issue)

    def on_status(self, repo: Repo, sha: str) -> None:
        for issue in repo.pulls():
            pr = issue.pr
            assert pr is not None
            if pr.head_sha == sha:
                self.start_auto_merge(repo, issue)

    def start_auto_merge(self, repo: Repo, issue: Issue) -> None:
        """automergequeue.StartPRCheckAndAutoMerge: queue the scheduled merge of an open PR for a try."""
        pr = issue.pr
        assert pr is not None
        if issue.state == "open" and not pr.merged and pr.scheduled is not None:
            self.sim.spawn(self.try_auto_merge(repo, issue), name=f"automerge-{issue.id}")

    def _dismiss_stale_reviews(self, repo: Repo, issue: Issue) -> None:
        pr = issue.pr
        assert pr is not None
        prot = self.sim.perms.protection_for(repo, pr.base_branch)
        for review in pr.reviews:
            if review.commit_id != pr.head_sha:
                review.stale = True
                if prot is not None and prot.flag("dismiss_stale_approvals") and review.state == "APPROVED":
                    review.dismissed = True

    # --- branch protection (CheckPullBranchProtections) ---
    def commit_state(self, repo: Repo, sha: str, required: list[str]) -> str:
        from .core import combined_state, latest_statuses

        latest = latest_statuses(repo.statuses.get(sha, []))
        if not latest:
            return "pending"
        if not required:
            return combined_state(latest)
        matched = []
        for pattern in required:
            hits = [s for s in latest if context_matches(pattern, s.context)]
            if not hits:
                return "pending"
            matched.extend(hits)
        return combined_state(matched)

    async def protection_failure(self, repo: Repo, issue: Issue) -> str | None:
        pr = issue.pr
        assert pr is not None
        prot = self.sim.perms.protection_for(repo, pr.base_branch)
        if prot is None:
            return None
        if prot.flag("enable_status_check") and \
                self.commit_state(repo, pr.head_sha, prot.names("status_check_contexts")) != "success":
            return "Not all required status checks successful"
        required = int(prot.opts.get("required_approvals", 0) or 0)
        official = [r for r in pr.reviews if r.official and not r.dismissed]
        approvals = [r for r in official if r.state == "APPROVED"
                     and not (r.stale and prot.flag("ignore_stale_approvals"))]
        if required and len(approvals) < required:
            return "Does not have enough approvals"
        if prot.flag("block_on_rejected_reviews") and any(r.state == "REQUEST_CHANGES" for r in official):
            return "There are requested changes"
        if prot.flag("block_on_outdated_branch"):
            base_sha = await self.sim.git(repo).branch_sha(pr.base_branch)
            if base_sha and not await self.sim.git(repo).is_ancestor(base_sha, pr.head_sha):
                return "The head branch is behind the base branch"
        return None

    def commit_status_pass(self, repo: Repo, issue: Issue) -> bool:
        """IsPullCommitStatusPass: without a rule, or with status checks off, the checks pass."""
        pr = issue.pr
        assert pr is not None
        prot = self.sim.perms.protection_for(repo, pr.base_branch)
        if prot is None or not prot.flag("enable_status_check"):
            return True
        return self.commit_state(repo, pr.head_sha, prot.names("status_check_contexts")) == "success"

    def not_ready(self, reason: str) -> ApiError:
        if self.sim.flavour == "forgejo":
            return ApiError(405, f"not allowed to merge [reason: {reason}]")
        return ApiError(405, reason)

    async def check_mergeable(self, repo: Repo, issue: Issue, doer: User, kind: str, force: bool) -> None:
        """CheckPullMergeable; kind is general | manual | auto. Raises the API's answers."""
        pr = issue.pr
        assert pr is not None
        if pr.merged:
            raise ApiError(405, "")
        if issue.state != "open":
            raise ApiError(404, "", not_found=True)
        if not self.sim.perms.can_merge(repo, pr.base_branch, doer):
            raise ApiError(405, "User not allowed to merge PR")
        if kind == "manual":
            return
        if is_draft(issue.title):
            raise ApiError(405, "Work in progress PRs cannot be merged")
        if pr.status not in ("mergeable", "empty"):
            raise ApiError(405, "Please try again later")
        reason = await self.protection_failure(repo, issue)
        if reason is not None and kind != "auto":
            skip = False
            if force:
                prot = self.sim.perms.protection_for(repo, pr.base_branch)
                is_admin = self.sim.perms.access(repo, doer) >= Access.ADMIN
                skip = doer.is_admin or (is_admin and not (prot and prot.flag("block_admin_merge_override")))
            if not skip:
                raise self.not_ready(reason)
        for dep_id in issue.depends_on:
            dep = self.sim.state.issues_by_id.get(dep_id)
            if dep is not None and dep.state == "open":
                # Gitea's API has no case for ErrDependenciesLeft: it answers 500.
                raise ApiError(500, "is blocked by an open dependency" if doer.is_admin else "")

    # --- merging (services/pull/merge.go) ---
    async def merge(self, repo: Repo, issue: Issue, doer: User, req: MergeRequest) -> int:
        """The whole POST .../merge answer: 200 merged, 201 scheduled; raises ApiError otherwise."""
        pr = issue.pr
        assert pr is not None
        kind = "manual" if req.style == "manually-merged" else ("auto" if req.when_checks_succeed else "general")
        await self.check_mergeable(repo, issue, doer, kind, req.force_merge)
        if req.style == "manually-merged":
            await self.merged_manually(repo, issue, doer, req.merge_commit_id)
            return 200
        style = req.style or "merge"
        message = req.title.strip() or self.default_message(repo, issue, style)
        if req.message.strip():
            message += "\n\n" + req.message.strip()
        if req.when_checks_succeed:
            # Gitea >= 1.22 (automerge.ScheduleAutoMerge) always schedules, green checks or not, and hands the
            # PR to its auto-merge queue, which merges it shortly after the 201 if the checks pass by then.
            if pr.scheduled is not None:
                raise ApiError(409, f"pull request is already scheduled to automerge [pull_id: {issue.id}]")
            pr.scheduled = ScheduledMerge(doer.id, style, message, req.delete_branch)
            self.sim.add_event(issue.id, "pull_scheduled_merge", doer)
            self.start_auto_merge(repo, issue)
            return 201
        await self.do_merge(repo, issue, doer, style, req.head_commit_id, message)
        if req.delete_branch:
            await self._delete_head_after_merge(repo, issue, doer)
        return 200

    def default_message(self, repo: Repo, issue: Issue, style: str) -> str:
        pr = issue.pr
        assert pr is not None
        if style == "squash":
            return f"{issue.title} (#{issue.index})"
        head = pr.head_branch  # GetDefaultMergeMessage: owner/repo:branch for a fork
        if pr.head_repo_id not in (None, repo.id):
            head = f"{self.sim.state.repo_full_name(self.sim.state.head_repo(repo, pr))}:{head}"
        return f"Merge pull request '{issue.title}' (#{issue.index}) from {head} into {pr.base_branch}"

    async def do_merge(self, repo: Repo, issue: Issue, doer: User, style: str, expected_head: str,
                       message: str) -> str:
        pr = issue.pr
        assert pr is not None
        if style not in MERGE_STYLES or not repo.settings.get(STYLE_SETTING.get(style, ""), False):
            raise ApiError(405, f"{style} is not allowed an allowed merge style for this repository")
        async with repo.lock:
            if expected_head and expected_head != pr.head_sha:
                raise ApiError(409, "head out of date")
            git = self.sim.git(repo)
            base_sha = await git.branch_sha(pr.base_branch)
            if base_sha is None:
                raise ApiError(500, "")
            try:
                new = await self._build(git, style, base_sha, pr.head_sha, message, doer, issue)
            except Conflict as c:
                raise ApiError(409, body=conflict_body(c)) from None
            except GitError as exc:
                if "unrelated histories" in exc.err:
                    raise ApiError(409, body={"Style": style, "StdOut": "", "StdErr": exc.err, "Err": {}}) from None
                raise
            if not await git.update_ref(f"refs/heads/{pr.base_branch}", new, base_sha):
                raise ApiError(409, "merge push out of date")
            await self._mark_merged(repo, issue, doer, new, emit=False)
        from .core import RefUpdate

        await self.sim.on_push(repo, doer, [RefUpdate(base_sha, new, f"refs/heads/{pr.base_branch}")])
        self.sim.webhooks.emit(repo, "pull_request", self.sim.payloads.pull_request("closed", repo, issue, doer),
                               branch=pr.base_branch)
        return new

    async def _build(self, git: GitRepo, style: str, base: str, head: str, message: str, doer: User,
                     issue: Issue) -> str:
        who = ident(doer)
        if style == "fast-forward-only":
            if not await git.is_ancestor(base, head):
                # Gitea's API does not map ErrMergeDivergingFastForwardOnly: it answers 500.
                raise ApiError(500, "Merge DivergingFastForwardOnly Error" if doer.is_admin else "")
            return head
        if style in ("merge", "squash"):
            tree, files = await git.merge_tree(base, head)
            if tree is None:
                raise Conflict(style, files)
            if style == "merge":
                return await git.commit_tree(tree, [base, head], message + "\n", who, who)
            poster = self.sim.state.users[issue.poster_id]
            body = "\n".join(f"* {c.message.strip()}" for c in reversed(await git.commits(f"{base}..{head}")))
            return await git.commit_tree(tree, [base], f"{message}\n\n{body}\n", ident(poster), who)
        rebased = await self.rebase(git, base, head, who, style)
        if style == "rebase":
            return rebased
        tree = await git.tree_of(rebased)
        return await git.commit_tree(tree, [base, rebased], message + "\n", who, who)

    async def rebase(self, git: GitRepo, onto: str, head: str, committer: Ident, style: str) -> str:
        """Replay onto..head (merges dropped, like `git rebase`) on `onto`, with plumbing only."""
        if await git.is_ancestor(onto, head):
            return head
        current = onto
        for sha in await git.rev_list("--reverse", "--no-merges", "--topo-order", f"{onto}..{head}"):
            info = await git.commit(sha)
            assert info is not None
            if not info.parents:
                raise Conflict(style, [], sha)
            # merge-tree picks the merge base itself: a commit with current's tree whose parent is sha's parent
            # makes that parent the base, which turns the merge into a cherry-pick of sha onto current.
            shim = await git.commit_tree(await git.tree_of(current), [info.parents[0]], "shim\n", committer,
                                         committer)
            tree, files = await git.merge_tree(shim, sha)
            if tree is None:
                raise Conflict(style, files, sha)
            if tree == await git.tree_of(current):
                continue  # already applied upstream: git rebase drops it
            current = await git.commit_tree(tree, [current], info.message, info.author,
                                            Ident(committer.name, committer.email))
        return current

    async def merged_manually(self, repo: Repo, issue: Issue, doer: User, commit_id: str) -> None:
        pr = issue.pr
        assert pr is not None
        if not repo.settings["allow_manual_merge"]:
            raise ApiError(405, "manually-merged is not allowed an allowed merge style for this repository")
        git = self.sim.git(repo)
        sha = await git.resolve(commit_id) if commit_id else None
        base_sha = await git.branch_sha(pr.base_branch)
        if sha is None or base_sha is None or not await git.is_ancestor(sha, base_sha):
            raise ApiError(409, body={"message": "Wrong commit ID", "url": f"{self.sim.base_url}/api/swagger"})
        await self._mark_merged(repo, issue, doer, sha, emit=True)

    async def _mark_merged(self, repo: Repo, issue: Issue, doer: User, sha: str, emit: bool) -> None:
        pr = issue.pr
        assert pr is not None
        pr.merged, pr.merged_at, pr.merged_by_id, pr.merge_commit_sha = True, utcnow(), doer.id, sha
        pr.scheduled = None
        pr.status = "mergeable"
        base_sha = await self.sim.git(repo).branch_sha(pr.base_branch)
        if base_sha:
            pr.base_sha = base_sha
        issue.state, issue.closed_at, issue.updated_at = "closed", utcnow(), utcnow()
        self.sim.add_event(issue.id, "merge_pull", doer, ref_commit_sha=sha)
        if emit:
            self.sim.webhooks.emit(repo, "pull_request",
                                   self.sim.payloads.pull_request("closed", repo, issue, doer),
                                   branch=pr.base_branch)

    async def _delete_head_after_merge(self, repo: Repo, issue: Issue, doer: User) -> None:
        pr = issue.pr
        assert pr is not None
        if pr.head_repo_id not in (None, repo.id):
            return  # not simulated: deleting the head branch in the fork
        if pr.head_branch == repo.default_branch or self.sim.perms.protection_for(repo, pr.head_branch):
            return
        if any(i.state == "open" and i.pr and i.pr.head_branch == pr.head_branch for i in repo.pulls()):
            return
        git = self.sim.git(repo)
        old = await git.branch_sha(pr.head_branch)
        if not old or not await git.delete_ref(f"refs/heads/{pr.head_branch}", old):
            return
        from .core import RefUpdate

        # repo_service.DeleteBranch with the merged PR: a "delete_branch" entry on it, then (with
        # [repository.pull-request] RETARGET_CHILDREN_ON_MERGE, default true) every open PR based on the
        # deleted branch is retargeted to the merged PR's base (stacked PRs).
        self.sim.add_event(issue.id, "delete_branch", doer, old_ref=pr.head_branch)
        for child in repo.pulls():
            cpr = child.pr
            assert cpr is not None
            if child.state == "open" and not cpr.merged and cpr.base_branch == pr.head_branch:
                self.change_target(repo, child, doer, pr.base_branch)
        await self.sim.on_push(repo, doer, [RefUpdate(old, ZERO_SHA, f"refs/heads/{pr.head_branch}")])

    def change_target(self, repo: Repo, issue: Issue, doer: User, new_base: str) -> bool:
        """ChangeTargetBranch: False (and no change) when an open PR for the same head and new base exists
        or the head is the new base."""
        pr = issue.pr
        assert pr is not None
        if pr.head_branch == new_base or any(
                o is not issue and o.state == "open" and o.pr is not None and not o.pr.merged
                and o.pr.head_branch == pr.head_branch and o.pr.base_branch == new_base for o in repo.pulls()):
            return False
        old_base = pr.base_branch
        pr.base_branch = new_base
        issue.updated_at = utcnow()
        self.sim.add_event(issue.id, "change_target_branch", doer, old_ref=old_base, new_ref=new_base)
        self.sim.webhooks.emit(repo, "pull_request",
                               self.sim.payloads.pull_request("edited", repo, issue, doer,
                                                              changes={"ref": {"from": old_base}}),
                               branch=new_base)
        self.schedule_check(repo, issue)
        return True

    # --- scheduled merge (services/automerge) ---
    async def try_auto_merge(self, repo: Repo, issue: Issue) -> None:
        pr = issue.pr
        assert pr is not None
        sched = pr.scheduled
        if sched is None or pr.merged or issue.state != "open":
            return
        doer = self.sim.state.users[sched.doer_id]
        try:
            if not self.commit_status_pass(repo, issue):
                raise ApiError(405, "Not all required status checks successful")
            await self.check_mergeable(repo, issue, doer, "general", False)
            await self.do_merge(repo, issue, doer, sched.style, "", sched.message)
        except ApiError as err:
            self.sim.log.add("automerge", repo=self.sim.state.repo_full_name(repo), index=issue.index,
                             merged=False, status=err.status, message=err.message)
            return
        self.sim.log.add("automerge", repo=self.sim.state.repo_full_name(repo), index=issue.index, merged=True)
        if sched.delete_branch:
            await self._delete_head_after_merge(repo, issue, doer)

    def cancel_scheduled(self, issue: Issue, doer: User) -> None:
        pr = issue.pr
        assert pr is not None
        pr.scheduled = None
        self.sim.add_event(issue.id, "pull_cancel_scheduled_merge", doer)

    # --- update the head branch from the base (services/pull/update.go) ---
    async def update(self, repo: Repo, issue: Issue, doer: User, rebase: bool) -> None:
        pr = issue.pr
        assert pr is not None
        if pr.head_repo_id not in (None, repo.id):
            raise ApiError(422, "updating the head branch of a pull request from a fork is not simulated")
        git = self.sim.git(repo)
        async with repo.lock:
            base_sha = await git.branch_sha(pr.base_branch)
            head_sha = pr.head_sha
            if base_sha is None:
                raise ApiError(500, "")
            if await git.is_ancestor(base_sha, head_sha):
                return
            who = ident(doer)
            if rebase:
                try:
                    new = await self.rebase(git, base_sha, head_sha, who, "rebase")
                except Conflict:
                    raise ApiError(409, "rebase failed because of conflict") from None
            else:
                tree, _ = await git.merge_tree(head_sha, base_sha)
                if tree is None:
                    raise ApiError(409, "merge failed because of conflict")
                msg = f"Merge branch '{pr.base_branch}' into {pr.head_branch}\n"
                new = await git.commit_tree(tree, [head_sha, base_sha], msg, who, who)
            if not await git.update_ref(f"refs/heads/{pr.head_branch}", new, head_sha):
                raise ApiError(409, "merge push out of date")
        from .core import RefUpdate

        await self.sim.on_push(repo, doer, [RefUpdate(head_sha, new, f"refs/heads/{pr.head_branch}")])

    def can_update(self, repo: Repo, issue: Issue, doer: User, rebase: bool) -> bool:
        """IsUserAllowedToUpdate: push rights on the head branch; rebase also needs force-push there."""
        pr = issue.pr
        assert pr is not None
        if rebase and not repo.settings["allow_rebase_update"]:
            return False
        if self.sim.perms.access(repo, doer) < Access.WRITE:
            poster_may = pr.allow_maintainer_edit and doer.id == issue.poster_id
            if not poster_may:
                return False
        prot = self.sim.perms.protection_for(repo, pr.head_branch)
        if prot is None:
            return True
        if rebase:
            return self.sim.perms.can_force_push(repo, prot, doer)
        return self.sim.perms.can_push(repo, prot, doer)


def conflict_body(c: Conflict) -> dict[str, object]:
    """ErrMergeConflicts / ErrRebaseConflicts serialized by ctx.JSON (exported Go fields)."""
    err_text = "".join(f"CONFLICT (content): Merge conflict in {f}\n" for f in c.files)
    body: dict[str, object] = {"Style": c.style}
    if c.style in ("rebase", "rebase-merge"):
        body["CommitSHA"] = c.commit
    body.update({"StdOut": err_text, "StdErr": "", "Err": {}})
    return body
