"""Immutable snapshots the machine decides on. Built by the gate from the database and the forge."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.queue.policy import QueuePolicy


class EntryState(enum.StrEnum):
    WAITING = "waiting"
    QUEUED = "queued"
    TESTING = "testing"
    MERGED = "merged"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AttemptState(enum.StrEnum):
    BUILDING = "building"
    TESTING = "testing"
    PASSED = "passed"
    MERGING = "merging"
    DONE = "done"
    FAILED = "failed"
    ABANDONED = "abandoned"


ACTIVE_ENTRY_STATES = frozenset({EntryState.WAITING, EntryState.QUEUED, EntryState.TESTING})
FINAL_ENTRY_STATES = frozenset({EntryState.MERGED, EntryState.FAILED, EntryState.CANCELLED})
ACTIVE_ATTEMPT_STATES = frozenset(
    {AttemptState.BUILDING, AttemptState.TESTING, AttemptState.PASSED, AttemptState.MERGING}
)


class Strategy(enum.StrEnum):
    STAGING = "staging"
    PR_BRANCH = "pr-branch"


class MergeMethod(enum.StrEnum):
    REBASE = "rebase"
    MERGE = "merge"
    SQUASH = "squash"


class Reason(enum.StrEnum):
    """Why the machine decided what it did. `queue.messages` turns each into words."""

    IDLE = "idle"
    STARTED = "started"
    RESUMED_BUILD = "resumed_build"
    CHECKS_PENDING = "checks_pending"
    CHECKS_PASSED = "checks_passed"
    CHECKS_FAILED = "checks_failed"
    CI_TIMEOUT = "ci_timeout"
    CONFLICT = "conflict"
    ALREADY_IN_BASE = "already_in_base"
    BASE_MOVED = "base_moved"
    HEAD_CHANGED = "head_changed"
    PR_CLOSED = "pr_closed"
    PR_MERGED_OUTSIDE = "pr_merged_outside"
    MERGE_RETRY = "merge_retry"
    MERGED = "merged"
    MERGE_REFUSED = "merge_refused"
    CANCELLED_BY_USER = "cancelled_by_user"
    DEPENDENCIES_MET = "dependencies_met"
    ORPHANED = "orphaned"
    PREEMPTED = "preempted"
    PERMISSION_REVOKED = "permission_revoked"
    BATCH_WAIT = "batch_wait"  # a short batch waits a moment for more entries
    BISECTED = "bisected"  # a red batch is split into parts (bisect_parts) and they are tested
    CHAIN_BROKEN = "chain_broken"  # an attempt's parent was rebuilt: what is built on it is rebuilt too
    FLAKY = "flaky"  # a batch failed, yet every part of it passed
    RETRIED = "retried"  # a PR red alone is tested again on the same candidate before it is rejected
    SKIPPED_BUILD = "skipped_build"  # the PR already sits on the base tip, green: it lands as it is
    BAD_CONFIG = "bad_config"  # the PR brings a merge-bot file that cannot be used
    FROZEN = "frozen"  # the train is frozen: green candidates wait, nothing lands
    PAUSED = "paused"  # the train is paused: nothing new is started
    REPOSITORY_UNMANAGED = "repository_unmanaged"  # discovery dropped the repository: its queue is wound down


class BisectionOutcome(enum.StrEnum):
    """What a bisected batch turned out to be, once every entry it carried is final."""

    CULPRIT = "culprit"  # a part failed alone: the batch was red because of it
    FLAKY = "flaky"  # every part passed (and landed): the batch's failure did not come from its changes
    INCONCLUSIVE = "inconclusive"  # entries were cancelled or left otherwise: nothing can be said


@dataclass(frozen=True, slots=True)
class PullView:
    """The forge's current view of a PR (fresh read or cached webhook facts)."""

    number: int
    head_sha: str
    state: str = "open"
    merged: bool = False
    merge_commit_sha: str | None = None

    @property
    def open(self) -> bool:
        return self.state == "open" and not self.merged


@dataclass(frozen=True, slots=True)
class EntryView:
    id: int
    pull: PullView
    state: EntryState
    approved_sha: str
    queued_at: datetime
    priority: int = 0
    method: MergeMethod = MergeMethod.REBASE
    cancel_requested_by: str | None = None
    ready: bool = False  # a waiting entry whose dependencies (and approvals) are all there
    single: bool = False  # ``/merge single``: tested in a batch of its own


@dataclass(frozen=True, slots=True)
class StatusView:
    context: str
    state: str
    target_url: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class AttemptView:
    """One active attempt: its entries in the order their changes are stacked on ``base_sha``.

    ``parent_id`` is the attempt whose candidate this one is built on (a speculative chain), or None for an
    attempt built on the base. ``statuses`` are the candidate's statuses as read for this snapshot (none while
    building, or once the base is at the candidate); ``landed``: the candidate is in the base's history.
    """

    id: int
    state: AttemptState
    base_sha: str
    entry_ids: tuple[int, ...]
    candidate_sha: str | None = None
    deadline_at: datetime | None = None
    strategy: Strategy = Strategy.STAGING
    parent_id: int | None = None
    statuses: tuple[StatusView, ...] = ()
    landed: bool = False
    split_from: int | None = None  # the red batch (a failed attempt) this attempt is a part of, when bisecting
    # The candidate is a tree already known red (the second half of a split is the very tree that failed):
    # the failure as that batch's CI reported it, and no CI run of its own.
    known_red: Mapping[str, Any] | None = None
    retries: int = 0  # how often this very candidate was tested again after it was red (flaky_retries)


@dataclass(frozen=True, slots=True)
class EntryConflicts:
    """Building an attempt's candidate stopped at this entry: its PR conflicts in ``paths`` with what comes
    before it (the base and the attempt's earlier entries)."""

    entry_id: int
    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EntryAddsNothing:
    """Building stopped at this entry: everything its PR changes is already in what comes before it."""

    entry_id: int


@dataclass(frozen=True, slots=True)
class EntryBadConfig:
    """Building stopped at this entry: its PR brings a merge-bot file that cannot be used (``problem``)."""

    entry_id: int
    path: str
    problem: str


BuildFailure = EntryConflicts | EntryAddsNothing | EntryBadConfig


@dataclass(frozen=True, slots=True)
class RequiredChecks:
    """Contexts that must be green: glob patterns, or ``None`` for "at least one status, all green"."""

    patterns: tuple[str, ...] | None = None
    source: str = "default"


class HoldKind(enum.StrEnum):
    """What a hold stops: a freeze stops merging (PRs are still queued and tested), a pause stops new attempts."""

    FREEZE = "freeze"
    PAUSE = "pause"


@dataclass(frozen=True, slots=True)
class Hold:
    """A freeze or a pause on the train: its own, its repository's, or a merge window's (``scope``: branch,
    repository or window). ``until``: when it lifts by itself (None: when someone lifts it). ``cancel_running``
    (a pause): the running attempts are abandoned, their entries back in line, instead of finishing."""

    kind: HoldKind
    reason: str
    by: str | None = None
    until: datetime | None = None
    scope: str = "branch"
    cancel_running: bool = False

    def active(self, now: datetime) -> bool:
        return self.until is None or now < self.until


@dataclass(frozen=True, slots=True)
class TrainSnapshot:
    """Everything the machine decides on for one train, read at one moment (``now``)."""

    train_id: int
    base_branch: str
    base_tip: str
    entries: tuple[EntryView, ...]
    attempts: tuple[AttemptView, ...]  # the active attempts in chain order: each built on the one before
    now: datetime
    required: RequiredChecks = field(default_factory=RequiredChecks)
    own_context: str = "merge-bot"
    policy: QueuePolicy = field(default_factory=QueuePolicy)
    bisections: tuple[BisectionView, ...] = ()  # red batches being bisected, not yet settled
    window: int | None = None  # how deep the chain may be now (None: the policy's starting window)
    holds: tuple[Hold, ...] = ()  # freezes and pauses on the train; those whose ``until`` passed count for nothing

    def held(self, kind: HoldKind) -> Hold | None:
        """The hold of that kind in force now (the first one, when several are), or None."""
        return next((hold for hold in self.holds if hold.kind is kind and hold.active(self.now)), None)


@dataclass(frozen=True, slots=True)
class BisectionView:
    """A red batch that was split (the failed attempt ``attempt_id``), with the states its entries are in
    now: it settles once every one of them is final."""

    attempt_id: int
    entries: tuple[tuple[int, EntryState], ...]
    context: str = ""
