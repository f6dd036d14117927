"""The queue machine (``bot.queue.machine.decide``) driven by hypothesis through long, hostile histories.

A model of one train stands in for the database and the forge: entries (one PR each), attempts (the active
ones a chain, each built on the candidate of the one before), the base branch's history, commit statuses per
SHA and a clock. Each history draws a :class:`~bot.queue.policy.QueuePolicy` as ``Gate.policy`` builds it:
``batch_max`` and ``max_parallel`` as a pair (``SHAPES``: most histories chain three or four candidates, some
of batches), a starting ``window`` and ``window_floor``, ``optimistic`` on or off, ``flaky_retries`` 0 or 1
(the pr-branch strategy caps batches and the chain at one and never lands optimistically, as the gate does, so
serial histories keep occurring). The train's window (``trains.window``) moves as ``Gate._move_window`` moves
it: one deeper for each attempt finished merged, halved after a red or timed-out attempt and a bisection.

One rule asks the machine for a decision and carries its actions out the way the gate does
(``bot/gate/service.py``): each database transition and each forge write is one atomic step, and a step may be
the last one before a crash (the rest of the decision is then lost, as when the process is killed). Carried
out as the gate does: ``StartAttempt`` (then the build), ``BuildCandidate`` (a conflict fails the entry via
``after_build``; a batch whose tree is that of a batch under bisection is recorded known red without CI, as
``Gate._known_red``; a single rebase PR that already sits on the base tip, green there, is recorded tested as
it is, as ``Gate._green_as_is``), ``MergeAttempt`` (each attempt marked merging, then one fast-forward to the
deepest candidate, landing the ``through`` ones with it; once the push is known to have landed, the gate
decides again at once, as ``Gate._decide_landed``), ``FinishMerged``, ``FailAttempt``, ``AbandonAttempt``,
``ReplaceChain``, ``SettleBisection``, ``RetryAttempt`` (one transaction ends the red attempt and opens its
re-test with ``retries`` + 1 and a status floor, what was built on it re-parented; then the very same commit is
built again: only statuses posted after the floor count), ``CancelEntry``, ``PromoteEntry``, ``RequeueEntry``.

The forge behaves like Gitea: the base only moves by a fast-forward, a refused push changes nothing, and a push
or a merge can be carried out while the call still fails. Other rules interfere: PR heads are force-pushed (and
back); PRs are closed, reopened or merged by hand; people push to the base, ask to cancel, and the clock runs on.

CI is modelled per candidate *tree* (the PRs a commit contains, and the pushes of people to the base): a "bad"
PR makes every tree holding it red, and so does a pair of PRs red only together (kinds ``pair-a`` and
``pair-b``); CI reports, on any context, ``success`` on a clean tree and something red on a dirty one, or
``pending``. A PR may be opened on the base tip with its own CI already reported on its head. Histories that
allow flakes also see spurious reds on clean trees (so a PR red alone is re-tested when ``flaky_retries``
allows), and deadlines passing with CI pending; the others do not (there, CI always answers in time).

Invariants, after every step:
* the bot moves the base only by a fast-forward, to a candidate whose required checks were all green on that
  very SHA at that moment (an oracle written here, not ``bot.queue.checks``; a re-test's own statuses only),
  built on the tip it moves from; the attempts it lands with it are those ahead of it in the chain, each green
  on its own candidate — or, with the optimistic policy only, named optimistic (it was tested inside the green
  one);
* the active attempts form one chain from the base tip: a prefix of attempts already landed (merging, their
  candidate in the base, the bookkeeping pending: the machine starts the next attempt on the landed candidate
  before it marks the PRs merged), then one attempt built on a commit the base held (or, just after a crash
  between the transactions of one rebuild, on its ended parent's candidate; or, a re-test being built, the
  commit it re-tests), each next one on the candidate of the one before; whenever the machine decides to wait,
  the first is built on the base tip itself;
* the chain's attempts not yet landed are never more than ``max_parallel`` (a bisection's parts aside: up to
  ``bisect_width`` and the second half on top of them),
  and a new attempt starts only while they are fewer than the train's window allows; with batches of one and
  ``max_parallel`` 1, that is the old "at most one active attempt"; no entry is in two active attempts, and
  every entry an active attempt carries is testing;
* no PR lands twice; a bad PR never lands;
* an entry fails only for what it did: a conflict only when its PR conflicts, red checks only when the first
  attempt of the chain is red on what counts (its re-test's statuses only) and its own change is to blame in
  the red tree (bad, or one of a red pair with the other in the tree) or the candidate got a spurious red, a
  timeout only in histories where CI may not answer; a PR red alone is re-tested (never rejected) while
  ``flaky_retries`` allow, and only on a red;
* a bisected batch is settled flaky only when every part of it landed;
* ``decide`` is deterministic (the same snapshot twice, the same decision).
And at the end of every history, liveness: once the interference stops and CI answers, asking the machine
again and again (bounded) brings every entry to a final state, and (with no flakes) every good PR nobody
touched ends merged. (The pure model does not tell PRs anything: that is checked in test_service_stateful.)

``event()`` records what each history did (deep chains, optimistic and multi-attempt landings, re-tests, a
re-tested PR landing, skipped builds, known-red halves, the window moving); so that this coverage cannot
silently vanish, :func:`test_fixed_histories_reach_deep_chains_retests_and_optimistic_landings` runs a fixed
set of histories (derandomized) and requires each of those to occur.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from bot.queue.machine import (
    AbandonAttempt,
    Action,
    BuildCandidate,
    CancelEntry,
    Decision,
    FailAttempt,
    FinishMerged,
    MergeAttempt,
    PromoteEntry,
    ReplaceChain,
    RequeueEntry,
    RetryAttempt,
    SettleBisection,
    StartAttempt,
    WaitUntil,
    after_build,
    decide,
)
from bot.queue.model import (
    ACTIVE_ATTEMPT_STATES,
    ACTIVE_ENTRY_STATES,
    AttemptState,
    AttemptView,
    BisectionOutcome,
    BisectionView,
    EntryConflicts,
    EntryState,
    EntryView,
    PullView,
    Reason,
    RequiredChecks,
    StatusView,
    Strategy,
    TrainSnapshot,
)
from bot.queue.policy import QueuePolicy

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CI_TIMEOUT = timedelta(minutes=30)
OWN = "merge-bot"
URGENT = 100
CONTEXTS = ("ci/test", "ci/lint", "coverage", OWN, f"{OWN}/ci/test")
COUNTED = tuple(c for c in CONTEXTS if c != OWN and not c.startswith(OWN + "/"))
STATES = ("success", "failure", "error", "pending", "warning")
RED = ("failure", "error", "warning")
FINAL = frozenset({EntryState.MERGED, EntryState.FAILED, EntryState.CANCELLED})
KINDS = ("good", "good", "good", "bad", "pair-a", "pair-b")
PARTNER = {"pair-a": "pair-b", "pair-b": "pair-a"}
# (batch_max, max_parallel): most histories chain three or four candidates (of one PR each, mostly), the rest
# chain two or test batches serially (batches of four or five: a bisected half can be a known-red tree); the
# first shapes are where shrinking goes.
SHAPES = (
    (1, 3),
    (1, 4),
    (2, 3),
    (1, 1),
    (1, 4),
    (4, 2),
    (1, 3),
    (1, 2),
    (3, 1),
    (2, 2),
    (5, 1),
    (2, 4),
    (4, 3),
    (1, 4),
    (1, 3),
)
# What the fixed histories must reach (see test_fixed_histories_reach_deep_chains_retests_and_optimistic_landings).
MUST_OCCUR = (
    "3 or more attempts under test at once",
    "4 attempts under test at once",
    "landed several attempts in one push",
    "landed optimistically",
    "RetryAttempt",
    "re-tested PR landed",
    "re-tested PR failed red again",
    "started on a landed candidate before its bookkeeping",
    "skipped the build",
    "known red without CI",
    "window shrunk",
    "window grew",
    "ReplaceChain bisecting",
    "crash",
)
COVERAGE: Counter[str] = Counter()  # histories in which each event occurred (every run of the machine)


def sha(*parts: object) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()


class Crash(Exception):
    """The process died: the rest of the decision is not carried out."""


@dataclass
class Pull:
    number: int
    head: str
    state: str = "open"
    merged: bool = False
    conflicts: bool = False  # its changes do not apply on the base: building a candidate fails


@dataclass
class Entry:
    id: int
    pull: Pull
    approved: str
    queued_at: datetime
    priority: int
    state: EntryState
    ready: bool = False
    cancel_by: str | None = None
    kind: str = "good"  # what its change does to CI: good, bad (red wherever it is), pair-a / pair-b
    single: bool = False
    touched: bool = False  # someone interfered (pushed, closed, cancelled, merged by hand): it may not merge
    failed_for: Reason | None = None


@dataclass
class Attempt:
    id: int
    state: AttemptState
    base: str
    entry_ids: tuple[int, ...]
    strategy: Strategy
    candidate: str | None = None
    deadline: datetime | None = None
    parent_id: int | None = None
    split_from: int | None = None
    bisected: bool = False  # ended failed by a ReplaceChain that split it
    context: str = ""
    detail: dict[str, Any] = field(default_factory=dict)  # the failure it was split for
    outcome: BisectionOutcome | None = None
    retry_of: int | None = None  # the red attempt this one re-tests (the very same commit)
    retries: int = 0
    floor: int = 0  # how many of the candidate's statuses were there before this re-test: they count no more
    known_red: dict[str, Any] | None = None  # the tree of a batch under bisection: red as that batch was, no CI
    as_is: bool = False  # the PR's own head, green on the base tip already: no build, no CI run of its own


def latest(statuses: list[StatusView]) -> dict[str, str]:
    """The newest state of each context that counts (the bot's own contexts never do)."""
    found: dict[str, str] = {}
    for status in statuses:  # newest first
        found.setdefault(status.context, status.state)
    return {c: s for c, s in found.items() if c != OWN and not c.startswith(OWN + "/")}


def relevant(required: RequiredChecks, statuses: list[StatusView]) -> dict[str, str]:
    counted = latest(statuses)
    if required.patterns is None:
        return counted
    return {c: s for c, s in counted.items() if any(fnmatchcase(c, p) for p in required.patterns)}


def green(required: RequiredChecks, statuses: list[StatusView]) -> bool:
    """The oracle: every required pattern needs a context, and every context that counts must be ``success``
    (with no patterns: at least one status, all green)."""
    found = relevant(required, statuses)
    if required.patterns is None:
        covered = bool(found)
    else:
        covered = all(any(fnmatchcase(c, p) for c in found) for p in required.patterns)
    return covered and all(state == "success" for state in found.values())


def red(required: RequiredChecks, statuses: list[StatusView]) -> bool:
    """The oracle: a context that counts is red (anything final but ``success``)."""
    return any(state in (*RED, "skipped") for state in relevant(required, statuses).values())


@dataclass
class Train:
    """The database and the forge, as far as one train goes."""

    required: RequiredChecks
    strategy: Strategy
    urgent: int | None
    batch_max: int = 1
    flaky: bool = False  # CI may report a spurious red, and may not answer before the deadline
    max_parallel: int = 1
    start_window: int | None = None  # the policy's starting window (None: max_parallel)
    window_floor: int = 1
    optimistic: bool = False
    flaky_retries: int = 0
    window: int | None = None  # the train's current window (trains.window), as Gate._move_window moves it
    now: datetime = T0
    base_history: list[str] = field(default_factory=lambda: [sha("base", 0)])
    entries: dict[int, Entry] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    statuses: dict[str, list[StatusView]] = field(default_factory=dict)  # newest first
    # commit → what it holds: the entries whose change it carries, and (negative) the pushes people made
    trees: dict[str, frozenset[int]] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)  # commit → the commit it was built on
    flaked: set[str] = field(default_factory=set)  # candidates that got a spurious red
    merged: Counter[int] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    budget: int | None = None  # atomic steps left before the crash, or None: no crash
    crashes: int = 0
    landed_now: bool = False  # the bot's own push moved the base in this decision (Gate._landed_now)
    seen: list[str] = field(default_factory=list)  # what happened, by kind (for hypothesis.event)

    @property
    def base(self) -> str:
        return self.base_history[-1]

    def policy(self) -> QueuePolicy:
        """As ``Gate.policy`` builds it: a strategy that tests the PR's own branch carries one entry, cannot be
        built upon (so no chain, no window) and never lands optimistically."""
        chains = self.strategy is Strategy.STAGING
        return QueuePolicy(
            batch_max=self.batch_max if chains else 1,
            bisect=True,
            urgent_priority=self.urgent,
            max_parallel=self.max_parallel if chains else 1,
            window=self.start_window if chains else None,
            window_floor=min(self.window_floor, self.max_parallel) if chains else 1,
            optimistic=self.optimistic and chains,
            flaky_retries=self.flaky_retries,
        )

    def chain(self) -> list[Attempt]:
        """The active attempts in chain order, as ``queries.chain_order`` puts them."""
        active = sorted((a for a in self.attempts if a.state in ACTIVE_ATTEMPT_STATES), key=lambda a: a.id)
        ids = {a.id for a in active}
        children: dict[int | None, list[Attempt]] = {}
        for a in active:
            children.setdefault(a.parent_id if a.parent_id in ids else None, []).append(a)
        ordered: list[Attempt] = []
        pending = list(children.get(None, []))
        while pending:
            a = pending.pop(0)
            ordered.append(a)
            pending[:0] = children.get(a.id, [])
        return ordered + [a for a in active if a not in ordered]

    def landed(self, attempt: Attempt) -> bool:
        """Merging, its candidate in the base: only the bookkeeping (FinishMerged) is left."""
        return (
            attempt.state is AttemptState.MERGING
            and attempt.candidate is not None
            and attempt.candidate in self.base_history
        )

    def under_test(self) -> list[Attempt]:
        """The chain's attempts not landed yet: what counts against the window."""
        return [a for a in self.chain() if not self.landed(a)]

    def by_id(self, attempt_id: int) -> Attempt:
        (found,) = [a for a in self.attempts if a.id == attempt_id]
        return found

    def active(self, attempt_id: int) -> Attempt:
        attempt = self.by_id(attempt_id)
        assert attempt.state in ACTIVE_ATTEMPT_STATES, f"the machine named attempt {attempt_id}, not active"
        return attempt

    def tree(self, commit: str) -> frozenset[int]:
        return self.trees.get(commit, frozenset())

    def changes(self, commit: str) -> list[Entry]:
        """The entries whose change the commit holds."""
        return [self.entries[e] for e in self.tree(commit) if e > 0]

    def clean(self, commit: str) -> bool:
        kinds = [e.kind for e in self.changes(commit)]
        return "bad" not in kinds and not ("pair-a" in kinds and "pair-b" in kinds)

    def to_blame(self, entry: Entry, commit: str) -> bool:
        """Whether the entry's own change makes the tree red."""
        if entry.kind == "bad":
            return True
        partner = PARTNER.get(entry.kind)
        return partner is not None and any(e.kind == partner for e in self.changes(commit))

    def visible(self, attempt: Attempt) -> list[StatusView]:
        """The candidate's statuses that count for this attempt: those posted after its re-test began."""
        if attempt.candidate is None:
            return []
        statuses = self.statuses.get(attempt.candidate, [])
        return statuses[: len(statuses) - attempt.floor]

    def snapshot(self) -> TrainSnapshot:
        views = tuple(
            EntryView(
                id=e.id,
                pull=PullView(e.pull.number, e.pull.head, e.pull.state, e.pull.merged),
                state=e.state,
                approved_sha=e.approved,
                queued_at=e.queued_at,
                priority=e.priority,
                cancel_requested_by=e.cancel_by,
                ready=e.ready,
                single=e.single,
            )
            for e in self.entries.values()
            if e.state in ACTIVE_ENTRY_STATES
        )
        attempts = []
        for attempt in self.chain():
            statuses: tuple[StatusView, ...] = ()
            landed = False
            if attempt.candidate is not None:  # what the gate reads (bot/gate/service.py, Gate._attempt_view)
                if attempt.state is AttemptState.MERGING and self.base != attempt.candidate:
                    landed = attempt.candidate in self.base_history
                if (
                    attempt.state is not AttemptState.BUILDING
                    and not landed
                    and attempt.known_red is None  # never pushed: the forge does not know it
                    and self.base != attempt.candidate
                ):
                    statuses = tuple(self.visible(attempt))
            attempts.append(
                AttemptView(
                    attempt.id,
                    attempt.state,
                    attempt.base,
                    attempt.entry_ids,
                    attempt.candidate,
                    attempt.deadline,
                    attempt.strategy,
                    parent_id=attempt.parent_id,
                    statuses=statuses,
                    landed=landed,
                    split_from=attempt.split_from,
                    known_red=attempt.known_red,
                    retries=attempt.retries,
                )
            )
        bisections = tuple(
            BisectionView(a.id, tuple((e, self.entries[e].state) for e in a.entry_ids), a.context)
            for a in self.attempts
            if a.bisected and a.outcome is None
        )
        return TrainSnapshot(
            train_id=1,
            base_branch="main",
            base_tip=self.base,
            entries=views,
            attempts=tuple(attempts),
            now=self.now,
            required=self.required,
            own_context=OWN,
            policy=self.policy(),
            bisections=bisections,
            window=self.window,
        )

    # -- carrying decisions out, as the gate does ------------------------------------------------------------

    def write(self) -> None:
        """One atomic step (a committed transaction or a forge write) is about to happen."""
        if self.budget is not None:
            if self.budget == 0:
                raise Crash
            self.budget -= 1

    def apply(self, action: Action) -> None:
        if isinstance(action, StartAttempt):
            self.start(action)
        elif isinstance(action, BuildCandidate):
            self.build(self.active(action.attempt_id))
        elif isinstance(action, MergeAttempt):
            self.merge(action)
        elif isinstance(action, FinishMerged):
            self.finish(action)
        elif isinstance(action, FailAttempt):
            self.fail(action)
        elif isinstance(action, AbandonAttempt):
            self.abandon(action)
        elif isinstance(action, ReplaceChain):
            self.replace_chain(action)
        elif isinstance(action, SettleBisection):
            self.settle(action)
        elif isinstance(action, RetryAttempt):
            self.retry(action)
        elif isinstance(action, CancelEntry):
            self.write()
            self.entries[action.entry_id].state = EntryState.CANCELLED
        elif isinstance(action, PromoteEntry):
            self.write()
            entry = self.entries[action.entry_id]
            assert entry.state is EntryState.WAITING, entry
            entry.state, entry.queued_at = EntryState.QUEUED, self.now
        elif isinstance(action, RequeueEntry):
            self.write()
            entry = self.entries[action.entry_id]
            assert entry.state is EntryState.TESTING, entry
            entry.state = EntryState.QUEUED
        else:
            assert isinstance(action, WaitUntil), action

    def open(
        self,
        entry_ids: tuple[int, ...],
        base: str,
        parent_id: int | None,
        split_from: int | None,
        allowed: tuple[EntryState, ...],
    ) -> Attempt:
        self.write()  # the attempt row and its entries, one transaction
        attempt = Attempt(
            len(self.attempts) + 1,
            AttemptState.BUILDING,
            base,
            entry_ids,
            self.strategy,
            parent_id=parent_id,
            split_from=split_from,
        )
        self.attempts.append(attempt)
        for entry_id in entry_ids:
            entry = self.entries[entry_id]
            if entry.state not in allowed:
                self.violations.append(f"attempt {attempt.id} took entry {entry_id} in state {entry.state}")
            entry.state = EntryState.TESTING
        return attempt

    def start(self, action: StartAttempt) -> None:
        chain = self.chain()
        if chain and (action.parent_id != chain[-1].id or action.base_sha != chain[-1].candidate):
            self.violations.append(f"StartAttempt not on the end of the chain {[a.id for a in chain]}")
        if not chain and action.base_sha != self.base:
            self.violations.append(f"StartAttempt on {action.base_sha[:8]}, not the base tip")
        policy = self.policy()
        if len(action.entry_ids) > policy.batch_max:
            self.violations.append(f"StartAttempt of {len(action.entry_ids)} entries, batch_max {policy.batch_max}")
        testing = self.under_test()
        if len(testing) >= policy.depth(self.window):
            self.violations.append(
                f"StartAttempt with {len(testing)} attempts under test, window {policy.depth(self.window)}"
            )
        if chain and not testing:
            self.seen.append("started on a landed candidate before its bookkeeping")
        attempt = self.open(action.entry_ids, action.base_sha, action.parent_id, None, (EntryState.QUEUED,))
        self.build(attempt)

    def build(self, attempt: Attempt) -> None:
        """Every entry's PR in turn onto the one before; the first that conflicts stops it (the machine says
        what then, as in the gate). A batch whose tree is that of a batch under bisection is recorded red as
        that batch was, without CI; a single PR already on the base tip and green there is recorded as it is."""
        for entry_id in attempt.entry_ids:
            if self.entries[entry_id].pull.conflicts:
                view = AttemptView(attempt.id, attempt.state, attempt.base, attempt.entry_ids)
                for action in after_build(view, EntryConflicts(entry_id, ("a.txt",))).actions:
                    self.apply(action)
                return
        heads = [self.entries[e].approved for e in attempt.entry_ids]
        if len(heads) == 1 and self.parents.get(heads[0]) == attempt.base:
            candidate = heads[0]  # rebasing a commit onto its own parent changes nothing
        else:
            # The candidate depends on the base and the approved heads only: a rebuild yields the same SHA.
            candidate = sha("candidate", attempt.base, *heads)
        self.trees[candidate] = self.tree(attempt.base) | set(attempt.entry_ids)
        self.parents[candidate] = attempt.base
        if len(heads) > 1:  # Gate._known_red: a single PR is always tested itself
            batch = next(
                (
                    a
                    for a in self.attempts
                    if a.bisected
                    and a.outcome is None
                    and a.candidate
                    and self.tree(a.candidate) == self.tree(candidate)
                ),
                None,
            )
            if batch is not None:
                self.write()  # recorded tested, red as the batch was, one transaction; nothing pushed
                kept = ("context", "state", "target_url", "description")
                known: dict[str, Any] = {k: batch.detail[k] for k in kept if k in batch.detail}
                attempt.candidate, attempt.known_red = candidate, {**known, "sha": batch.candidate}
                attempt.state, attempt.deadline = AttemptState.TESTING, self.now + CI_TIMEOUT
                self.seen.append("known red without CI")
                return
        entry = self.entries[attempt.entry_ids[0]]
        if (  # Gate._green_as_is
            len(heads) == 1
            and attempt.parent_id is None
            and attempt.retry_of is None
            and attempt.strategy is Strategy.STAGING
            and candidate == entry.approved
            and green(self.required, self.statuses.get(candidate, []))
        ):
            self.write()  # recorded tested as it is, one transaction; nothing pushed
            attempt.candidate, attempt.as_is = candidate, True
            attempt.state, attempt.deadline = AttemptState.TESTING, self.now + CI_TIMEOUT
            self.seen.append("skipped the build")
            return
        self.write()  # the candidate recorded (still "building")
        attempt.candidate = candidate
        self.write()  # the push: a staging ref, or the PR's own branch (pr-branch strategy)
        if attempt.strategy is Strategy.PR_BRANCH:
            entry.pull.head = candidate
        self.write()  # "testing", with the deadline
        attempt.state, attempt.deadline = AttemptState.TESTING, self.now + CI_TIMEOUT

    def descends(self, commit: str, ancestor: str) -> list[str] | None:
        """The commits from ``ancestor`` (excluded) to ``commit``, oldest first, or None if not a descendant."""
        path = [commit]
        while path[-1] != ancestor:
            if path[-1] not in self.parents:
                return None
            path.append(self.parents[path[-1]])
        return path[-2::-1]

    def merge(self, action: MergeAttempt) -> None:
        landing = [self.active(a) for a in (*action.through, action.attempt_id)]
        deepest = landing[-1]
        assert deepest.candidate == action.candidate_sha, (deepest, action)
        chain = self.chain()
        if [a.id for a in chain[: len(landing)]] != [a.id for a in landing]:
            self.violations.append(f"MergeAttempt of {[a.id for a in landing]}, not a prefix of the chain")
        policy = self.policy()
        for attempt in landing[:-1]:  # each green on its own candidate, or landed inside the green one behind it
            alone = attempt.known_red is None and green(self.required, self.visible(attempt))
            if not alone and not (policy.optimistic and attempt.id in action.optimistic):
                self.violations.append(f"attempt {attempt.id} landed through {deepest.id}, not green itself")
        if action.optimistic and not policy.optimistic:
            self.violations.append(f"an optimistic landing {dict(action.optimistic)} without the optimistic policy")
        # As deep as it can: the longest green prefix, or (optimistic) up to the deepest green candidate.
        behind = chain[len(landing) :] if policy.optimistic else chain[len(landing) : len(landing) + 1]
        deeper = [
            a.id
            for a in behind
            if a.state is not AttemptState.BUILDING and a.known_red is None and green(self.required, self.visible(a))
        ]
        if deeper:
            self.violations.append(f"MergeAttempt to {deepest.id} while {deeper} behind it are green")
        for attempt in landing:
            if attempt.state is not AttemptState.MERGING:
                self.write()
                attempt.state = AttemptState.MERGING
        self.write()  # the fast-forward; the forge refuses anything else
        path = self.descends(action.candidate_sha, self.base)
        if self.base != action.base_sha or path is None:
            return
        if landing[0].base != action.base_sha:
            self.violations.append(
                f"merge of attempt {landing[0].id} from {action.base_sha}, built on {landing[0].base}"
            )
        if not green(self.required, self.visible(deepest)) or deepest.known_red is not None:
            self.violations.append(f"the base moved to {action.candidate_sha[:8]}, not green on it")
        self.base_history.extend(path)
        self.landed_now = self.strategy is Strategy.STAGING  # the bot's own push: known to have landed
        for attempt in landing:
            for entry_id in attempt.entry_ids:
                entry = self.entries[entry_id]
                if entry.pull.merged:
                    self.violations.append(f"entry {entry_id}: its PR was merged already when the base moved for it")
                if attempt.strategy is Strategy.PR_BRANCH:
                    entry.pull.merged = True  # the forge's own merge (Do=fast-forward-only) marks it
        for entry in self.changes(self.base):
            if entry.kind == "bad":
                self.violations.append(f"bad entry {entry.id} landed in {self.base[:8]}")
        if len(landing) > 1:
            self.seen.append("landed several attempts in one push")
        if action.optimistic:
            self.seen.append("landed optimistically")
        if any(a.retries for a in landing):
            self.seen.append("re-tested PR landed")

    def finish(self, action: FinishMerged) -> None:
        attempt = self.active(action.attempt_id)
        if action.candidate_sha not in self.base_history:
            self.violations.append(f"FinishMerged of {action.candidate_sha[:8]}, which is not in the base")
        for entry_id in action.entry_ids:  # marking the PRs merged on the forge
            self.write()
            self.entries[entry_id].pull.merged = True
        self.write()  # the attempt done, its entries merged and the window grown, one transaction
        attempt.state = AttemptState.DONE
        for entry_id in action.entry_ids:
            self.entries[entry_id].state = EntryState.MERGED
            self.merged[entry_id] += 1
        self.move_window(landed=1)

    def move_window(self, *, landed: int = 0, failed: bool = False) -> None:
        """As ``Gate._move_window``: one deeper for each attempt landed, halved after a failure."""
        policy = self.policy()
        window = policy.shrunk(self.window) if failed else policy.grown(self.window, landed)
        before, after = policy.depth(self.window), policy.depth(window)
        if after != before:
            self.seen.append("window shrunk" if after < before else "window grew")
        self.window = window

    def fail(self, action: FailAttempt) -> None:
        attempt = self.by_id(action.attempt_id)
        if action.reason in (Reason.CHECKS_FAILED, Reason.CI_TIMEOUT):
            chain = self.chain()
            if not chain or chain[0].id != attempt.id:
                self.violations.append(f"attempt {attempt.id} failed for its checks, not first in the chain")
        if action.reason is Reason.CHECKS_FAILED:
            if attempt.known_red is None and not red(self.required, self.visible(attempt)):
                self.violations.append(f"attempt {attempt.id} failed for red checks, not red on what counts")
            retest_due = (
                len(attempt.entry_ids) == 1
                and attempt.known_red is None
                and attempt.strategy is Strategy.STAGING
                and attempt.retries < self.flaky_retries
            )
            if retest_due:
                self.violations.append(f"attempt {attempt.id}: a PR red alone rejected without its re-test")
            if attempt.retries:
                self.seen.append("re-tested PR failed red again")
        self.write()  # the attempt failed, its entries failed and the others requeued, one transaction
        attempt.state = AttemptState.FAILED
        for entry_id in action.entry_ids:
            entry = self.entries[entry_id]
            entry.state, entry.failed_for = EntryState.FAILED, action.reason
            self.judge_failure(entry, attempt, action.reason)
        for entry_id in action.requeue:
            self.entries[entry_id].state = EntryState.QUEUED
        if action.reason in (Reason.CHECKS_FAILED, Reason.CI_TIMEOUT):
            self.move_window(failed=True)

    def judge_failure(self, entry: Entry, attempt: Attempt, reason: Reason) -> None:
        """An entry fails only for what its own change did (or for a CI that lied or did not answer)."""
        where = f"entry {entry.id} ({entry.kind}) failed for {reason.value} in attempt {attempt.id}"
        if reason is Reason.CONFLICT:
            if not entry.pull.conflicts:
                self.violations.append(f"{where}, yet its PR does not conflict")
        elif reason is Reason.CHECKS_FAILED:
            candidate = attempt.candidate
            assert candidate is not None
            if not self.to_blame(entry, candidate) and candidate not in self.flaked:
                self.violations.append(f"{where}: red for what others did, tree {sorted(self.tree(candidate))}")
        elif reason is Reason.CI_TIMEOUT:
            if not self.flaky and not (attempt.candidate and self.to_blame(entry, attempt.candidate)):
                self.violations.append(f"{where}, though CI answers in time in this history")
        else:
            self.violations.append(f"{where}: the model knows no such cause")

    def abandon(self, action: AbandonAttempt) -> None:
        attempt = self.active(action.attempt_id)
        self.write()  # the attempt abandoned and the others requeued, one transaction
        attempt.state = AttemptState.ABANDONED
        for entry_id in action.requeue:
            entry = self.entries[entry_id]
            entry.state = EntryState.QUEUED
            if attempt.strategy is Strategy.PR_BRANCH and attempt.candidate == entry.pull.head:
                entry.approved = entry.pull.head  # the approval follows the bot's own rebase

    def retry(self, action: RetryAttempt) -> None:
        """As ``Gate._retry``: one transaction ends the red attempt and opens its re-test (same entries, same
        base, same parent, ``retries`` + 1, a status floor at what the candidate has now) and re-parents what
        was built on it; then the very same commit is built again, onto a fresh ref."""
        old = self.active(action.attempt_id)
        chain = self.chain()
        if chain[0].id != old.id:
            self.violations.append(f"RetryAttempt of attempt {old.id}, not first in the chain")
        if len(old.entry_ids) != 1 or old.strategy is not Strategy.STAGING or old.known_red is not None:
            self.violations.append(f"RetryAttempt of attempt {old.id}: not a PR tested alone on a staging ref")
        if old.retries >= self.flaky_retries:
            self.violations.append(f"RetryAttempt of attempt {old.id}: re-tested {old.retries} times already")
        if not red(self.required, self.visible(old)):
            self.violations.append(f"RetryAttempt of attempt {old.id}, which is not red")
        assert old.candidate is not None
        self.write()  # the old attempt ended "retried", the new one opened, children re-parented
        old.state = AttemptState.ABANDONED
        new = Attempt(
            len(self.attempts) + 1,
            AttemptState.BUILDING,
            old.base,
            old.entry_ids,
            old.strategy,
            parent_id=old.parent_id,
            split_from=old.split_from,
            retry_of=old.id,
            retries=old.retries + 1,
            floor=len(self.statuses.get(old.candidate, [])),
        )
        self.attempts.append(new)
        for attempt in self.attempts:
            if attempt.parent_id == old.id and attempt.state in ACTIVE_ATTEMPT_STATES:
                attempt.parent_id = new.id
        self.build(new)
        if new.candidate is not None and new.candidate != old.candidate:
            self.violations.append(f"the re-test {new.id} built {new.candidate[:8]}, not {old.candidate[:8]}")

    def replace_chain(self, action: ReplaceChain) -> None:
        """As ``Gate._replace``: one transaction ends the tail (the bisected attempt failed), then each group is
        opened and built on the one before (a group whose build stopped is skipped over)."""
        chain = self.chain()
        ids = [a.id for a in chain]
        tail = list(action.attempt_ids)
        if ids[len(ids) - len(tail) :] != tail:
            self.violations.append(f"ReplaceChain of {tail}, not a tail of the chain {ids}")
        parent = self.by_id(action.parent_id) if action.parent_id is not None else None
        expected = parent.candidate if parent is not None else self.base
        if action.base_sha != expected:
            self.violations.append(f"ReplaceChain on {action.base_sha[:8]}, not on {str(expected)[:8]}")
        ended = [self.active(a) for a in tail]
        carried = {e for a in ended for e in a.entry_ids}
        grouped = [e for group in action.groups for e in group.entry_ids]
        if len(grouped) != len(set(grouped)) or not set(grouped) <= carried:
            self.violations.append(f"ReplaceChain groups {action.groups} from the entries of {tail}")
        self.write()  # the tail ended, its kept entries still under test, the window moved, one transaction
        for attempt in ended:
            if attempt.id == action.bisected:
                attempt.state, attempt.bisected = AttemptState.FAILED, True
                attempt.detail = {**(attempt.known_red or {}), **action.detail}
                attempt.context = str(action.detail.get("context", ""))
                self.move_window(failed=True)
            else:
                attempt.state = AttemptState.ABANDONED
            for entry_id in attempt.entry_ids:
                entry = self.entries[entry_id]
                if (
                    entry_id in grouped
                    and attempt.strategy is Strategy.PR_BRANCH
                    and attempt.candidate == entry.pull.head
                ):
                    entry.approved = entry.pull.head
        parent_id, base = action.parent_id, action.base_sha
        for group in action.groups:
            attempt = self.open(group.entry_ids, base, parent_id, group.split_from, (EntryState.TESTING,))
            self.build(attempt)
            if attempt.candidate is not None and attempt.state is AttemptState.TESTING:
                parent_id, base = attempt.id, attempt.candidate

    def settle(self, action: SettleBisection) -> None:
        attempt = self.by_id(action.attempt_id)
        states = [self.entries[e].state for e in attempt.entry_ids]
        if any(state not in FINAL for state in states):
            self.violations.append(f"bisection {attempt.id} settled with entries still active: {states}")
        flaky = all(state is EntryState.MERGED for state in states)
        if (action.outcome is BisectionOutcome.FLAKY) is not flaky:
            self.violations.append(f"bisection {attempt.id} settled {action.outcome.value}, its entries {states}")
        self.write()
        attempt.outcome = action.outcome

    def note(self, decision: Decision) -> None:
        for action in decision.actions:
            name = type(action).__name__
            if isinstance(action, ReplaceChain) and action.bisected:
                name += " bisecting"
            if isinstance(action, SettleBisection):
                name += f" {action.outcome.value}"
            self.seen.append(name)

    def step(self) -> bool:
        """One decision, carried out (up to a crash); False when the machine decided to wait. When the bot's
        own push landed a candidate, the gate decides again at once (``Gate._decide_landed``)."""
        decision = decide(self.snapshot())
        if decision.waits:
            chain = self.chain()
            if chain and chain[0].base != self.base:
                self.violations.append(f"the machine waits with the chain on {chain[0].base[:8]}, not the tip")
            return False
        self.note(decision)
        self.landed_now = False
        try:
            for action in decision.actions:
                self.apply(action)
            if self.landed_now:
                follow = decide(self.snapshot())
                self.note(follow)
                for action in follow.actions:
                    self.apply(action)
        except Crash:
            self.crashes += 1
            self.seen.append("crash")
        finally:
            self.budget = None
        depth = len(self.under_test())
        if depth >= 3:
            self.seen.append("3 or more attempts under test at once")
        if depth >= 4:
            self.seen.append("4 attempts under test at once")
        return True

    # -- CI ----------------------------------------------------------------------------------------------------

    def answer(self, candidate: str) -> None:
        """CI finishes on every context, honestly."""
        state = "success" if self.clean(candidate) else "failure"
        self.statuses.setdefault(candidate, [])[:0] = [StatusView(c, state) for c in COUNTED]

    def built_on(self, attempt: Attempt) -> str | None:
        """The commit what is built on the attempt sits on: its candidate, or, for a re-test opened whose build
        was cut short, the very commit it re-tests."""
        if attempt.candidate is None and attempt.retry_of is not None:
            return self.by_id(attempt.retry_of).candidate
        return attempt.candidate

    def chain_problems(self) -> list[str]:
        """Where the active attempts are not one chain from the base tip, or deeper than the policy allows."""
        chain = self.chain()
        if not chain:
            return []
        problems = []
        ids = {a.id for a in chain}
        first = chain[0]
        roots = [a.id for a in chain if a.parent_id not in ids]
        if roots != [first.id]:
            problems.append(f"more than one chain: attempts {roots} are each built on no active attempt")
        if first.base not in self.base_history:
            parent = self.by_id(first.parent_id) if first.parent_id is not None else None
            left_by_crash = (
                self.crashes > 0
                and parent is not None
                and parent.state not in ACTIVE_ATTEMPT_STATES
                and self.built_on(parent) == first.base
            )
            if not left_by_crash:
                problems.append(f"the first attempt {first.id} is built on {first.base[:8]}, never the base")
        for parent, child in itertools.pairwise(chain):
            if child.parent_id != parent.id or child.base != self.built_on(parent):
                problems.append(f"attempt {child.id} is not built on the candidate of attempt {parent.id}")
        flags = [self.landed(a) for a in chain]
        if flags != sorted(flags, reverse=True):
            problems.append(f"landed attempts {[a.id for a in chain if self.landed(a)]} are not a prefix")
        policy = self.policy()
        # A bisection's parts aside: up to bisect_width of them (two, when max_parallel is 1) with the second half
        # on top, known red, so not asked of CI — unless the parts were rebuilt on a base moved since.
        bisecting = any(a.split_from is not None for a in self.under_test())
        deepest = policy.bisect_width + 1 if bisecting else policy.max_parallel
        if len(self.under_test()) > deepest:
            problems.append(f"{len(self.under_test())} attempts under test, max_parallel {policy.max_parallel}")
        return problems


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.train = Train(RequiredChecks(("ci/test",)), Strategy.STAGING, URGENT)
        self.pushes = 0
        self.history: set[str] = set()  # what this history did, for COVERAGE

    @initialize(
        required=st.sampled_from(
            [
                RequiredChecks(("ci/test",)),
                RequiredChecks(("ci/*",)),
                RequiredChecks(("ci/test", "coverage")),
                RequiredChecks(None),
            ]
        ),
        strategy=st.sampled_from([*[Strategy.STAGING] * 5, Strategy.PR_BRANCH]),
        urgent=st.sampled_from([URGENT, None]),
        shape=st.sampled_from(SHAPES),
        windows=st.data(),
        optimistic=st.booleans(),
        flaky_retries=st.sampled_from([1, 0]),
        flaky=st.booleans(),
        kinds=st.lists(
            st.tuples(st.sampled_from(KINDS), st.sampled_from([False, False, True])), min_size=3, max_size=7
        ),
    )
    def configure(
        self,
        required: RequiredChecks,
        strategy: Strategy,
        urgent: int | None,
        shape: tuple[int, int],
        windows: st.DataObject,
        optimistic: bool,
        flaky_retries: int,
        flaky: bool,
        kinds: list[tuple[str, bool]],
    ) -> None:
        """A train, its policy, and a few PRs in line already (some opened on the base tip, their own CI
        reported), so that batches and chains form from the start."""
        batch_max, max_parallel = shape
        floor = windows.draw(st.sampled_from([1, 1, 1, 2]).map(lambda n: min(n, max_parallel)), label="window_floor")
        window = windows.draw(st.sampled_from([None, None, *range(floor, max_parallel + 1)]), label="window")
        self.train = Train(
            required,
            strategy,
            urgent,
            batch_max=batch_max,
            flaky=flaky,
            max_parallel=max_parallel,
            start_window=window,
            window_floor=floor,
            optimistic=optimistic,
            flaky_retries=flaky_retries,
        )
        policy = self.train.policy()
        self.history |= {
            f"max_parallel {policy.max_parallel}",
            f"flaky_retries {flaky_retries}",
            "optimistic" if policy.optimistic else "not optimistic",
        }
        for kind, on_tip in kinds:
            self.enqueue(0, False, False, kind, False, on_tip, "verdict")

    def _events(self) -> None:
        for name in self.train.seen:
            event(name)
            self.history.add(name)
        self.train.seen.clear()

    def _new_sha(self, what: str) -> str:
        self.pushes += 1
        return sha(what, self.pushes)

    def _active(self) -> list[Entry]:
        return [e for e in self.train.entries.values() if e.state in ACTIVE_ENTRY_STATES]

    def _tested(self) -> list[Attempt]:
        return [a for a in self.train.chain() if a.candidate is not None]

    def _move_base(self, what: str, entry: Entry | None = None) -> None:
        train = self.train
        new = self._new_sha(what)
        # People merge only good changes by hand: a bad one in the base would make every candidate red.
        added = {entry.id} if entry is not None and entry.kind == "good" else set()
        train.trees[new] = train.tree(train.base) | added | {-self.pushes}  # and the push's own content
        train.parents[new] = train.base
        train.base_history.append(new)

    # -- the queue ------------------------------------------------------------------------------------------

    @precondition(lambda self: len(self.train.entries) < 9)
    @rule(
        priority=st.sampled_from([0, 0, 0, 1, URGENT]),
        conflicts=st.sampled_from([False, False, False, False, True]),
        waits=st.sampled_from([False, False, True]),
        kind=st.sampled_from(KINDS),
        single=st.sampled_from([False, False, False, True]),
        on_tip=st.sampled_from([False, False, True]),
        pr_ci=st.sampled_from(["verdict", "verdict", "pending", "flake", "none"]),
    )
    def enqueue(
        self, priority: int, conflicts: bool, waits: bool, kind: str, single: bool, on_tip: bool, pr_ci: str
    ) -> None:
        """A PR is queued. ``on_tip``: its head is a commit on the base tip as it is now (if the base does not
        move, the candidate is that very commit), with its own CI reported on it (``pr_ci``)."""
        train = self.train
        number = len(train.entries) + 1
        head = self._new_sha(f"pr{number}")
        state = EntryState.WAITING if waits else EntryState.QUEUED
        pull = Pull(number, head, conflicts=conflicts)
        train.entries[number] = Entry(number, pull, head, train.now, priority, state, kind=kind, single=single)
        if not on_tip:
            return
        train.parents[head] = train.base
        train.trees[head] = train.tree(train.base) | {number}
        if pr_ci == "none":
            return
        if pr_ci == "pending":
            train.statuses[head] = [StatusView(c, "pending") for c in COUNTED]
            return
        train.answer(head)
        if pr_ci == "flake" and train.flaky and train.clean(head):
            train.statuses[head].insert(0, StatusView("ci/test", "error"))
            train.flaked.add(head)

    @rule()
    def gate_step(self) -> None:
        self.train.step()
        self._events()

    @rule(writes=st.integers(min_value=0, max_value=9))
    def gate_step_then_crash(self, writes: int) -> None:
        """The process dies after ``writes`` atomic steps of the decision."""
        self.train.budget = writes
        self.train.step()
        self._events()

    @rule(
        flake=st.sampled_from([False, True]),
        answered=st.sampled_from([1, 99, 2, -1]),
        crash=st.none() | st.integers(0, 9),
    )
    def ci_then_gate_step(self, flake: bool, answered: int, crash: int | None) -> None:
        """The common case, weighted up: CI has answered on the first ``answered`` candidates of the chain, or
        (-1) on the last one only (in a history with flakes, maybe with a spurious red on the first answered),
        then the gate looks (and may die on the way). The first answered alone lands alone, and the chain grows
        at its end again; the last alone lands the chain optimistically, or waits."""
        train = self.train
        tested = self._tested()
        for index, attempt in enumerate(tested[-1:] if answered < 0 else tested[:answered]):
            assert attempt.candidate is not None
            train.answer(attempt.candidate)
            if flake and index == 0 and train.flaky and train.clean(attempt.candidate):
                train.statuses[attempt.candidate].insert(0, StatusView("ci/test", "failure"))
                train.flaked.add(attempt.candidate)
        train.budget = crash
        train.step()
        self._events()

    @precondition(lambda self: self.train.flaky and self._tested())
    @rule(context=st.sampled_from(COUNTED), state=st.sampled_from(RED))
    def ci_flakes_on_the_head_then_gate_step(self, context: str, state: str) -> None:
        """In a history with flakes: CI answers on the chain's first candidate, with a spurious red on one
        context if its tree is clean (a PR alone is then re-tested, when ``flaky_retries`` allows), then the
        gate looks."""
        train = self.train
        candidate = self._tested()[0].candidate
        assert candidate is not None
        train.answer(candidate)
        if train.clean(candidate):
            train.statuses[candidate].insert(0, StatusView(context, state))
            train.flaked.add(candidate)
        train.step()
        self._events()

    @rule(crash=st.none() | st.tuples(st.integers(0, 4), st.integers(0, 9)))
    def gate_runs_until_it_waits(self, crash: tuple[int, int] | None) -> None:
        """As ``Gate.run``: pass after pass (bounded) until the machine decides to wait, CI not answering in
        between, so the chain grows as deep as the window allows; ``crash``: the process dies in that pass
        after that many atomic steps."""
        train = self.train
        for index in range(8):
            crashes = train.crashes
            if crash is not None and crash[0] == index:
                train.budget = crash[1]
            busy = train.step()
            self._events()
            if not busy or train.crashes > crashes:
                break

    # -- CI -------------------------------------------------------------------------------------------------

    @precondition(lambda self: self._tested())
    @rule(
        data=st.data(),
        context=st.sampled_from(CONTEXTS),
        answer=st.sampled_from(["verdict", "verdict", "pending", "flake"]),
    )
    def ci_reports(self, data: st.DataObject, context: str, answer: str) -> None:
        """CI reports on one context of one candidate of the chain: what its tree deserves, or pending; in
        histories with flakes, sometimes a red on a clean tree. The bot's own contexts say anything."""
        attempt = data.draw(st.sampled_from(self._tested()))
        candidate = attempt.candidate
        assert candidate is not None
        clean = self.train.clean(candidate)
        if context not in COUNTED:
            state = data.draw(st.sampled_from(STATES))
        elif answer == "pending":
            state = "pending"
        elif answer == "flake" and self.train.flaky and clean:
            state = data.draw(st.sampled_from(RED))
            self.train.flaked.add(candidate)
        else:
            state = "success" if clean else data.draw(st.sampled_from(RED))
        self.train.statuses.setdefault(candidate, []).insert(0, StatusView(context, state))

    @precondition(lambda self: self._tested())
    @rule(data=st.data(), flake=st.sampled_from([False, False, True]))
    def ci_finishes_one(self, data: st.DataObject, flake: bool) -> None:
        """CI finishes on one candidate of the chain, any of them (runs end in any order, so a candidate behind
        may be green while the one before it is still pending): honestly, or (in a history with flakes) with a
        spurious red on a clean tree."""
        train = self.train
        candidate = data.draw(st.sampled_from(self._tested())).candidate
        assert candidate is not None
        train.answer(candidate)
        if flake and train.flaky and train.clean(candidate):
            train.statuses[candidate].insert(0, StatusView("ci/test", "failure"))
            train.flaked.add(candidate)

    @rule(minutes=st.sampled_from([1, 10, 31]))
    def time_passes(self, minutes: int) -> None:
        train = self.train
        later = train.now + timedelta(minutes=minutes)
        deadlines = [a.deadline for a in train.chain() if a.deadline is not None]
        if not train.flaky and deadlines:  # CI answers in time: the clock stops short of a deadline
            later = min(later, min(deadlines) - timedelta(seconds=1))
        train.now = max(train.now, later)

    # -- people ---------------------------------------------------------------------------------------------

    @precondition(lambda self: self._active())
    @rule(data=st.data())
    def dependency_met(self, data: st.DataObject) -> None:
        entry = data.draw(st.sampled_from(self._active()))
        entry.ready = True

    @precondition(lambda self: self._active())
    @rule(
        data=st.data(),
        what=st.sampled_from(["force-push", "close", "change-of-mind", "cancel", "merge-by-hand"]),
    )
    def people_interfere(self, data: st.DataObject, what: str) -> None:
        """Force-push a PR, close it, undo that (the PR reopened, the approved commit pushed back), ask to
        cancel, or merge a PR by hand. One rule, so that interference does not drown the queue's work."""
        entry = data.draw(st.sampled_from(self._active()))
        if what == "force-push":
            entry.pull.head, entry.touched = self._new_sha(f"force{entry.id}"), True
        elif what == "close":
            entry.pull.state, entry.touched = "closed", True
        elif what == "change-of-mind":
            entry.pull.state, entry.pull.head = "open", entry.approved
        elif what == "cancel":
            entry.cancel_by, entry.touched = "maint", True
        else:
            entry.pull.merged, entry.pull.state, entry.touched = True, "closed", True
            self._move_base("manual-merge", entry)

    @rule()
    def human_pushes_to_base(self) -> None:
        self._move_base("human")

    # -- invariants -----------------------------------------------------------------------------------------

    @invariant()
    def base_moves_only_to_green_candidates_and_nothing_merges_twice(self) -> None:
        assert self.train.violations == [], self.train.violations
        assert all(count == 1 for count in self.train.merged.values()), self.train.merged
        landed_bad = [e.id for e in self.train.entries.values() if e.kind == "bad" and e.state is EntryState.MERGED]
        assert landed_bad == [], f"bad entries merged: {landed_bad}"

    @invariant()
    def active_attempts_form_one_chain_and_their_entries_are_testing(self) -> None:
        """The active attempts form one chain from the base tip, no deeper than the policy allows (landed
        attempts whose bookkeeping is pending aside; one attempt under test, when batches are of one and
        max_parallel is 1), no entry is in two of them, and every entry they carry is testing."""
        train = self.train
        chain = train.chain()
        assert train.chain_problems() == [], (train.chain_problems(), chain)
        policy = train.policy()
        if policy.batch_max == 1 and policy.max_parallel == 1:
            # No batch is ever bisected: one attempt under test at most, after those being merged (the next one
            # is started on a landed candidate before that one's bookkeeping is done).
            assert all(a.state is AttemptState.MERGING for a in chain[:-1]), chain
        carried = Counter(e for a in chain for e in a.entry_ids)
        assert [e for e, n in carried.items() if n > 1] == [], chain
        for attempt in chain:
            for entry_id in attempt.entry_ids:
                assert train.entries[entry_id].state is EntryState.TESTING, (attempt, train.entries[entry_id])

    @invariant()
    def decide_is_deterministic(self) -> None:
        snapshot = self.train.snapshot()
        copy = replace(snapshot, entries=tuple(replace(e) for e in snapshot.entries))
        first, second = decide(snapshot), decide(copy)
        assert first == second, (first, second)

    def teardown(self) -> None:
        """Liveness: the interference stops, dependencies are met, CI answers every candidate (honestly, once
        per attempt: a re-test is answered again), the clock runs past deadlines; asking the machine again,
        within a bound, ends every entry — and, with no flakes, every good entry nobody touched (and not one of
        a red pair) is merged."""
        train = self.train
        for entry in train.entries.values():
            entry.ready = True
        answered: set[int] = set()
        for _ in range(400):
            if train.step():
                self._events()
                continue
            waiting_for_ci = (AttemptState.TESTING, AttemptState.MERGING)
            unanswered = [
                a
                for a in train.chain()
                if a.candidate is not None and a.state in waiting_for_ci and a.id not in answered
            ]
            if unanswered:
                for attempt in unanswered:
                    assert attempt.candidate is not None
                    train.answer(attempt.candidate)
                    answered.add(attempt.id)
                continue
            deadlines = [a.deadline for a in train.chain() if a.deadline is not None and train.now < a.deadline]
            if deadlines:
                train.now = min(deadlines)
                continue
            break
        COVERAGE.update(self.history)
        assert train.violations == [], train.violations
        assert train.chain() == [], (train.chain(), train.entries)
        stuck = {e.id: e.state.value for e in train.entries.values() if e.state not in FINAL}
        assert not stuck, f"entries left without a final state: {stuck}; attempts: {train.attempts}"
        if not train.flaky:
            kinds = {e.kind for e in train.entries.values()}
            unmerged = {
                e.id: (e.state.value, e.failed_for)
                for e in train.entries.values()
                if e.kind == "good" or (e.kind in PARTNER and PARTNER[e.kind] not in kinds)
                if not e.touched and not e.pull.conflicts and e.state is not EntryState.MERGED
            }
            assert not unmerged, f"good entries not merged: {unmerged}; attempts: {train.attempts}"
        unsettled = [a.id for a in train.attempts if a.bisected and a.outcome is None]
        assert unsettled == [], f"bisections never settled: {unsettled}"


MACHINE_SETTINGS = settings(
    max_examples=int(os.environ.get("MERGE_BOT_MACHINE_EXAMPLES", "400")),  # more, to explore further
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
QueueMachine.TestCase.settings = MACHINE_SETTINGS
TestQueueMachine = QueueMachine.TestCase


def test_fixed_histories_reach_deep_chains_retests_and_optimistic_landings() -> None:
    """The same histories on every run (derandomized, no example database): each of ``MUST_OCCUR`` happens in
    at least one of them — chains of three and four candidates under test, several attempts and optimistic
    landings in one push, re-tests that land and re-tests red again, the next attempt started on a landed
    candidate, skipped builds, known-red halves, the window moving — so the random run above cannot silently
    stop covering them. The counts (histories in which each occurred) are printed."""
    COVERAGE.clear()
    run_state_machine_as_test(
        QueueMachine,
        settings=settings(
            MACHINE_SETTINGS,
            max_examples=int(os.environ.get("MERGE_BOT_MACHINE_FIXED_EXAMPLES", "300")),
            derandomize=True,
            database=None,
        ),
    )
    counts = dict(sorted(COVERAGE.items()))
    print("queue machine, fixed histories:", counts)
    missing = [what for what in MUST_OCCUR if not COVERAGE[what]]
    assert missing == [], f"never happened in the fixed histories: {missing}; counts: {counts}"


def test_testing_entry_orphaned_by_a_crash_is_picked_up_again() -> None:
    """The shortest history the state machine found (before ``RequeueEntry``, the entry stood 'testing' for
    good): queue, test, force-push, a crash between abandoning the attempt and cancelling the entry (two
    transactions in the gate), the approved commit pushed back."""
    train = Train(RequiredChecks(("ci/test",)), Strategy.STAGING, URGENT)
    head = sha("pr", 1)
    train.entries[1] = Entry(1, Pull(1, head), head, T0, 0, EntryState.QUEUED)
    train.step()  # StartAttempt, candidate built, testing
    train.entries[1].pull.head = sha("force", 1)
    train.budget = 1
    train.step()  # AbandonAttempt committed; the process dies before CancelEntry
    assert (train.chain(), train.entries[1].state) == ([], EntryState.TESTING)
    train.entries[1].pull.head = head  # the author pushes the approved commit back
    for _ in range(20):
        if not train.step():
            chain = train.chain()
            if not chain or chain[0].candidate is None:
                break
            train.statuses.setdefault(chain[0].candidate, []).insert(0, StatusView("ci/test", "success"))
    assert train.entries[1].state in FINAL, train.entries[1]


def test_a_candidate_turning_red_before_a_retried_merge_is_not_merged() -> None:
    """Found by the state machine (the retry used to push without looking): green, the merge decided and
    recorded, the process dies before the push, CI re-runs and reports failure, the gate retries the merge."""
    train = Train(RequiredChecks(("ci/test",)), Strategy.STAGING, URGENT)
    head = sha("pr", 1)
    train.entries[1] = Entry(1, Pull(1, head), head, T0, 0, EntryState.QUEUED)
    train.step()  # StartAttempt, candidate built, testing
    (attempt,) = train.chain()
    assert attempt.candidate is not None
    train.statuses[attempt.candidate] = [StatusView("ci/test", "success")]
    train.budget = 1
    train.step()  # "merging" recorded; the process dies before the fast-forward
    assert attempt.state is AttemptState.MERGING and train.base != attempt.candidate
    train.statuses[attempt.candidate].insert(0, StatusView("ci/test", "failure"))
    train.flaked.add(attempt.candidate)  # a red on a clean tree: the model's word for a flake
    train.step()
    assert train.base != attempt.candidate, "the base moved to a candidate whose required check is red"
