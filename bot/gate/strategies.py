"""How a candidate is tested, landed and marked merged: one object per strategy (:func:`plan_for`).

- :class:`StagingPlan` (``staging``): the candidate goes to the bot's own ``merge-bot/<base>/<attempt>`` ref,
  where CI runs; on green the bot pushes it to the base as a fast-forward (the base only moves to a tested
  SHA) and marks each PR merged with ``Do=manually-merged`` at the commit where its own change ends. An
  attempt may carry any number of entries.
- :class:`PrBranchPlan` (``pr-branch``): the candidate replaces the PR's own branch (a push with a lease on
  the approved head), CI runs on the PR as usual, and the forge merges it with ``Do=fast-forward-only`` and
  ``head_commit_id`` = the tested SHA. It tests the PR's own branch, so an attempt carries exactly one entry.

The gate asks the plan of an attempt's strategy instead of branching on the strategy itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot.db.models import Entry, PullRequest, Repository
from bot.forge import errors
from bot.forge.client import GiteaClient
from bot.gate.locks import TrainLock
from bot.git.mirror import Mirror, Pushed, Rejected, Rejection
from bot.logs import get_logger
from bot.queue.model import Strategy

log = get_logger(__name__)


@dataclass(frozen=True)
class Landed:
    """The base moved to the candidate. ``known``: by the bot's own push, so the base is known to be at the
    candidate and the next decision can be made at once; otherwise the forge moved it and the next snapshot
    reads where it is."""

    known: bool


@dataclass(frozen=True)
class Refused:
    """The forge refuses to land the candidate, for good (a protected branch, a merge not allowed). ``via``:
    what was refused, the bot's push (``push``) or the forge's merge call (``merge``): the fix differs."""

    message: str
    via: str = "push"


@dataclass(frozen=True)
class NotYet:
    """Nothing landed for now (the base moved, the forge is still checking, the call failed): the next
    snapshot decides."""


Landing = Landed | Refused | NotYet


@dataclass(frozen=True)
class Base:
    """Where a candidate lands: the forge, the repository and its target branch, and the bot's mirror
    (fetched only by the strategy that pushes)."""

    forge: GiteaClient
    repo: Repository
    branch: str
    mirror: Callable[[], Awaitable[Mirror]]
    delete_branch_after_merge: bool = False


class StagingPlan:
    strategy = Strategy.STAGING
    max_entries: int | None = None
    mirrors_checks = True  # CI runs on the staging ref: its results are copied onto the PR heads
    deletes_merged_branch = True  # the PR's branch still holds the approved head, which is in the base now

    def candidate_ref(self, branch: str, attempt_id: int, pulls: Sequence[PullRequest]) -> str:
        return f"refs/heads/merge-bot/{branch}/{attempt_id}"

    def push_lease(self, entries: Sequence[Entry]) -> str | None:
        """The value the candidate's ref is expected to hold: the bot's own ref, new or from an older try."""
        return None

    def tested_head(self, entry: Entry, candidate_sha: str) -> str:
        """The commit that shows the entry under test: the PR's approved head."""
        return entry.approved_sha

    def merged_head(self, entry: Entry) -> str | None:
        """The commit whose status shows the merge: the PR's approved head."""
        return entry.approved_sha

    def approval_after_abandon(self, candidate_sha: str | None, pull: PullRequest) -> str | None:
        """The PR head untouched, the approval stays where it is."""
        return None

    def staging_branch(self, ref: str | None) -> str | None:
        """The attempt's own branch, deleted when the attempt ends."""
        return ref.removeprefix("refs/heads/") if ref else None

    async def land(self, base: Base, pulls: Sequence[PullRequest], candidate_sha: str) -> Landing:
        mirror = await base.mirror()
        result = await mirror.push_fast_forward(base.branch, candidate_sha)
        if isinstance(result, Pushed):
            return Landed(known=True)
        if isinstance(result, Rejected) and result.reason is Rejection.REMOTE_REJECTED:
            return Refused(result.detail)
        return NotYet()  # a non-fast-forward refusal means the base moved: the next snapshot rebuilds

    async def mark_merged(self, base: Base, lock: TrainLock, pull: PullRequest, sha: str) -> None:
        """Gitea does not mark a PR merged by a push (autodetect is off by default): say so explicitly."""
        await lock.check()
        forge, repo = base.forge, base.repo
        try:
            info = await forge.get_pull(repo.owner, repo.name, pull.number)
            if info.merged:
                return
            await forge.merge_pull(repo.owner, repo.name, pull.number, "manually-merged", merge_commit_id=sha)
        except errors.NotAllowed as exc:
            if exc.try_again_later:
                raise  # the gate backs off; the next snapshot sees the base at the candidate and marks again
            if not exc.already_merged:
                log.warning("gate.mark_merged_refused", pull=pull.number, error=str(exc))
        except errors.ForgeError as exc:
            log.warning("gate.mark_merged_failed", pull=pull.number, error=str(exc))


class PrBranchPlan:
    strategy = Strategy.PR_BRANCH
    max_entries: int | None = 1  # the candidate is the PR's own branch: it can carry that PR only
    mirrors_checks = False  # CI runs on the PR itself
    deletes_merged_branch = False  # the forge's merge deletes it when configured

    def candidate_ref(self, branch: str, attempt_id: int, pulls: Sequence[PullRequest]) -> str:
        (pull,) = pulls
        return f"refs/heads/{pull.head_ref}"

    def push_lease(self, entries: Sequence[Entry]) -> str | None:
        """The PR's branch is rewritten only while it holds the approved head."""
        (entry,) = entries
        return entry.approved_sha

    def tested_head(self, entry: Entry, candidate_sha: str) -> str:
        """The rebased PR head is the candidate."""
        return candidate_sha

    def merged_head(self, entry: Entry) -> str | None:
        """The PR's head at the merge: the tested candidate."""
        return entry.merged_sha

    def approval_after_abandon(self, candidate_sha: str | None, pull: PullRequest) -> str | None:
        """The approval follows the bot's own rebase of the PR branch."""
        return pull.head_sha if candidate_sha == pull.head_sha else None

    def staging_branch(self, ref: str | None) -> str | None:
        return None

    async def land(self, base: Base, pulls: Sequence[PullRequest], candidate_sha: str) -> Landing:
        (pull,) = pulls
        repo = base.repo
        try:
            await base.forge.merge_pull(
                repo.owner,
                repo.name,
                pull.number,
                "fast-forward-only",
                head_commit_id=candidate_sha,
                delete_branch_after_merge=base.delete_branch_after_merge,
            )
        except errors.NotAllowed as exc:
            if exc.try_again_later or exc.already_merged:
                return NotYet()  # mergeability still being checked, or it did merge: the next snapshot re-reads
            # A 405 is not taken at its word: a PR closed, merged or pushed to under the call is the next
            # snapshot's to decide (cancel, finish), not a refusal (docs/faults.md #15).
            info = await base.forge.get_pull(repo.owner, repo.name, pull.number)
            if info.merged or info.state != "open" or info.head_sha != candidate_sha:
                return NotYet()
            return Refused(exc.message, via="merge")
        except (errors.Conflict, errors.ServerError, errors.Unavailable, errors.NotFound) as exc:
            log.warning("gate.merge_call_failed", pull=pull.number, error=str(exc))  # re-read decides
            return NotYet()
        return Landed(known=False)

    async def mark_merged(self, base: Base, lock: TrainLock, pull: PullRequest, sha: str) -> None:
        """The forge's own merge marked it."""


Plan = StagingPlan | PrBranchPlan
PLANS: dict[Strategy, Plan] = {Strategy.STAGING: StagingPlan(), Strategy.PR_BRANCH: PrBranchPlan()}


def plan_for(strategy: Strategy | str) -> Plan:
    return PLANS[Strategy(strategy)]
