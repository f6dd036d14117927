"""The queue machine (``bot.queue.machine.decide``) driven by hypothesis through long, hostile histories.

A model of one train stands in for the database and the forge: entries (one PR each), attempts, the base
branch's history, commit statuses per SHA and a clock. One rule asks the machine for a decision and carries
its actions out the way the gate does (``bot/gate/service.py``): each database transition and each forge write
is one atomic step, and a step may be the last one before a crash (the rest of the decision is then lost,
as when the process is killed). The forge behaves like Gitea: the base only moves by a fast-forward, a
refused push changes nothing, and a push or a merge can be carried out while the call still fails. Other rules
interfere: CI reports green, red or nothing; PR heads are force-pushed (and back); PRs are closed, reopened or
merged by hand; people push to the base, ask to cancel, and the clock runs past deadlines.

Invariants, after every step:
* the bot moves the base only by a fast-forward, to a candidate whose required checks were all green on that
  very SHA at that moment (checked by an oracle written here, not by ``bot.queue.checks``);
* no entry is merged twice; at most one attempt is active; every entry an active attempt carries is testing;
* ``decide`` is deterministic (the same snapshot twice, the same decision).
And at the end of every history, liveness: once the interference stops and CI answers, asking the machine
again and again (bounded) brings every entry to a final state.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from bot.queue.machine import (
    AbandonAttempt,
    Action,
    BuildCandidate,
    CancelEntry,
    FailAttempt,
    FinishMerged,
    MergeAttempt,
    PromoteEntry,
    RequeueEntry,
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
    EntryConflicts,
    EntryState,
    EntryView,
    PullView,
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
STATES = ("success", "failure", "error", "pending", "warning")
FINAL = frozenset({EntryState.MERGED, EntryState.FAILED, EntryState.CANCELLED})


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


@dataclass
class Attempt:
    id: int
    state: AttemptState
    base: str
    entry_ids: tuple[int, ...]
    strategy: Strategy
    candidate: str | None = None
    deadline: datetime | None = None


def green(required: RequiredChecks, statuses: list[StatusView]) -> bool:
    """The oracle: the newest status of each context counts; the bot's own contexts never do; every required
    pattern needs a context, and every context that counts must be ``success`` (with no patterns: at least one
    status, all green)."""
    latest: dict[str, str] = {}
    for status in statuses:  # newest first
        latest.setdefault(status.context, status.state)
    counted = {c: s for c, s in latest.items() if c != OWN and not c.startswith(OWN + "/")}
    if required.patterns is None:
        return bool(counted) and all(state == "success" for state in counted.values())
    relevant = {c: s for c, s in counted.items() if any(fnmatchcase(c, p) for p in required.patterns)}
    covered = all(any(fnmatchcase(c, p) for c in relevant) for p in required.patterns)
    return covered and all(state == "success" for state in relevant.values())


@dataclass
class Train:
    """The database and the forge, as far as one train goes."""

    required: RequiredChecks
    strategy: Strategy
    urgent: int | None
    now: datetime = T0
    base_history: list[str] = field(default_factory=lambda: [sha("base", 0)])
    entries: dict[int, Entry] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    statuses: dict[str, list[StatusView]] = field(default_factory=dict)  # newest first
    merged: Counter[int] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    budget: int | None = None  # atomic steps left before the crash, or None: no crash

    @property
    def base(self) -> str:
        return self.base_history[-1]

    @property
    def attempt(self) -> Attempt | None:
        active = [a for a in self.attempts if a.state in ACTIVE_ATTEMPT_STATES]
        return active[0] if active else None

    def snapshot(self) -> TrainSnapshot:
        attempt = self.attempt
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
            )
            for e in self.entries.values()
            if e.state in ACTIVE_ENTRY_STATES
        )
        attempts: tuple[AttemptView, ...] = ()
        if attempt is not None:
            statuses: tuple[StatusView, ...] = ()
            landed = False
            if attempt.candidate is not None:  # what the gate reads (bot/gate/service.py, Gate.snapshot)
                if attempt.state is AttemptState.MERGING and self.base != attempt.candidate:
                    landed = attempt.candidate in self.base_history
                if attempt.state is not AttemptState.BUILDING and not landed and self.base != attempt.candidate:
                    statuses = tuple(self.statuses.get(attempt.candidate, ()))
            attempts = (
                AttemptView(
                    attempt.id,
                    attempt.state,
                    attempt.base,
                    attempt.entry_ids,
                    attempt.candidate,
                    attempt.deadline,
                    attempt.strategy,
                    statuses=statuses,
                    landed=landed,
                ),
            )
        return TrainSnapshot(
            train_id=1,
            base_branch="main",
            base_tip=self.base,
            entries=views,
            attempts=attempts,
            now=self.now,
            required=self.required,
            own_context=OWN,
            policy=QueuePolicy(urgent_priority=self.urgent),
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
            attempt = self.attempt
            assert attempt is not None and attempt.id == action.attempt_id
            self.build(attempt)
        elif isinstance(action, MergeAttempt):
            self.merge(action)
        elif isinstance(action, FinishMerged):
            self.finish(action)
        elif isinstance(action, FailAttempt):
            self.fail(action.attempt_id, action.entry_ids, action.requeue)
        elif isinstance(action, AbandonAttempt):
            self.abandon(action)
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

    def start(self, action: StartAttempt) -> None:
        if self.attempt is not None:
            self.violations.append(f"StartAttempt while attempt {self.attempt.id} is active")
        self.write()  # the attempt row and its entries, one transaction
        attempt = Attempt(
            len(self.attempts) + 1, AttemptState.BUILDING, action.base_sha, action.entry_ids, self.strategy
        )
        self.attempts.append(attempt)
        for entry_id in action.entry_ids:
            entry = self.entries[entry_id]
            if entry.state is not EntryState.QUEUED:
                self.violations.append(f"StartAttempt took entry {entry_id} in state {entry.state}")
            entry.state = EntryState.TESTING
        self.build(attempt)

    def build(self, attempt: Attempt) -> None:
        """Every entry's PR in turn onto the one before; the first that conflicts stops it (the machine says
        what then, as in the gate)."""
        for entry_id in attempt.entry_ids:
            if self.entries[entry_id].pull.conflicts:
                view = AttemptView(attempt.id, attempt.state, attempt.base, attempt.entry_ids)
                for action in after_build(view, EntryConflicts(entry_id, ("a.txt",))).actions:
                    self.apply(action)
                return
        entry = self.entries[attempt.entry_ids[0]]
        # The candidate depends on the base and the approved heads only: a rebuild yields the same SHA.
        candidate = sha("candidate", attempt.base, *(self.entries[e].approved for e in attempt.entry_ids))
        self.write()  # the candidate recorded (still "building")
        attempt.candidate = candidate
        self.write()  # the push: a staging ref, or the PR's own branch (pr-branch strategy)
        if attempt.strategy is Strategy.PR_BRANCH:
            entry.pull.head = candidate
        self.write()  # "testing", with the deadline
        attempt.state, attempt.deadline = AttemptState.TESTING, self.now + CI_TIMEOUT

    def merge(self, action: MergeAttempt) -> None:
        attempt = self.attempt
        assert attempt is not None and attempt.id == action.attempt_id and attempt.candidate == action.candidate_sha
        if attempt.state is not AttemptState.MERGING:
            self.write()
            attempt.state = AttemptState.MERGING
        self.write()  # the fast-forward; the forge refuses anything else
        if self.base != action.base_sha:
            return
        if attempt.base != action.base_sha:
            self.violations.append(f"merge of attempt {attempt.id} from {action.base_sha}, built on {attempt.base}")
        if not green(self.required, self.statuses.get(action.candidate_sha, [])):
            self.violations.append(f"the base moved to {action.candidate_sha[:8]}, not green on it")
        self.base_history.append(action.candidate_sha)
        for entry_id in attempt.entry_ids:
            if self.entries[entry_id].pull.merged:
                self.violations.append(f"entry {entry_id}: its PR was merged already when the base moved for it")

    def finish(self, action: FinishMerged) -> None:
        attempt = self.attempt
        assert attempt is not None and attempt.id == action.attempt_id
        if action.candidate_sha not in self.base_history:
            self.violations.append(f"FinishMerged of {action.candidate_sha[:8]}, which is not in the base")
        for entry_id in action.entry_ids:  # marking the PRs merged on the forge
            self.write()
            self.entries[entry_id].pull.merged = True
        self.write()  # the attempt done and its entries merged, one transaction
        attempt.state = AttemptState.DONE
        for entry_id in action.entry_ids:
            self.entries[entry_id].state = EntryState.MERGED
            self.merged[entry_id] += 1

    def fail(self, attempt_id: int, entry_ids: tuple[int, ...], requeue: tuple[int, ...] = ()) -> None:
        self.write()  # the attempt failed, its entries failed and the others requeued, one transaction
        for attempt in self.attempts:
            if attempt.id == attempt_id:
                attempt.state = AttemptState.FAILED
        for entry_id in entry_ids:
            self.entries[entry_id].state = EntryState.FAILED
        for entry_id in requeue:
            self.entries[entry_id].state = EntryState.QUEUED

    def abandon(self, action: AbandonAttempt) -> None:
        attempt = self.attempt
        assert attempt is not None and attempt.id == action.attempt_id
        self.write()  # the attempt abandoned and the others requeued, one transaction
        attempt.state = AttemptState.ABANDONED
        for entry_id in action.requeue:
            entry = self.entries[entry_id]
            entry.state = EntryState.QUEUED
            if attempt.strategy is Strategy.PR_BRANCH and attempt.candidate == entry.pull.head:
                entry.approved = entry.pull.head  # the approval follows the bot's own rebase

    def step(self) -> bool:
        """One decision, carried out (up to a crash); False when the machine decided to wait."""
        decision = decide(self.snapshot())
        if decision.waits:
            return False
        try:
            for action in decision.actions:
                self.apply(action)
        except Crash:
            pass
        finally:
            self.budget = None
        return True


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.train = Train(RequiredChecks(("ci/test",)), Strategy.STAGING, URGENT)
        self.pushes = 0

    @initialize(
        required=st.sampled_from(
            [
                RequiredChecks(("ci/test",)),
                RequiredChecks(("ci/*",)),
                RequiredChecks(("ci/test", "coverage")),
                RequiredChecks(None),
            ]
        ),
        strategy=st.sampled_from(Strategy),
        urgent=st.sampled_from([URGENT, None]),
    )
    def configure(self, required: RequiredChecks, strategy: Strategy, urgent: int | None) -> None:
        self.train = Train(required, strategy, urgent)

    def _new_sha(self, what: str) -> str:
        self.pushes += 1
        return sha(what, self.pushes)

    def _active(self) -> list[Entry]:
        return [e for e in self.train.entries.values() if e.state in ACTIVE_ENTRY_STATES]

    # -- the queue ------------------------------------------------------------------------------------------

    @precondition(lambda self: len(self.train.entries) < 6)
    @rule(
        priority=st.sampled_from([0, 0, 0, 1, URGENT]),
        conflicts=st.sampled_from([False, False, False, True]),
        waits=st.sampled_from([False, False, True]),
    )
    def enqueue(self, priority: int, conflicts: bool, waits: bool) -> None:
        number = len(self.train.entries) + 1
        head = self._new_sha(f"pr{number}")
        state = EntryState.WAITING if waits else EntryState.QUEUED
        pull = Pull(number, head, conflicts=conflicts)
        self.train.entries[number] = Entry(number, pull, head, self.train.now, priority, state)

    @rule()
    def gate_step(self) -> None:
        self.train.step()

    @rule(writes=st.integers(min_value=0, max_value=4))
    def gate_step_then_crash(self, writes: int) -> None:
        """The process dies after ``writes`` atomic steps of the decision."""
        self.train.budget = writes
        self.train.step()

    # -- CI -------------------------------------------------------------------------------------------------

    @precondition(lambda self: self.train.attempt is not None and self.train.attempt.candidate is not None)
    @rule(context=st.sampled_from(CONTEXTS), state=st.sampled_from(STATES))
    def ci_reports(self, context: str, state: str) -> None:
        attempt = self.train.attempt
        assert attempt is not None and attempt.candidate is not None
        self.train.statuses.setdefault(attempt.candidate, []).insert(0, StatusView(context, state))

    @rule(minutes=st.sampled_from([1, 10, 31]))
    def time_passes(self, minutes: int) -> None:
        self.train.now += timedelta(minutes=minutes)

    # -- people ---------------------------------------------------------------------------------------------

    @precondition(lambda self: self._active())
    @rule(data=st.data())
    def dependency_met(self, data: st.DataObject) -> None:
        entry = data.draw(st.sampled_from(self._active()))
        entry.ready = True

    @precondition(lambda self: self._active())
    @rule(data=st.data())
    def force_push(self, data: st.DataObject) -> None:
        entry = data.draw(st.sampled_from(self._active()))
        entry.pull.head = self._new_sha(f"force{entry.id}")

    @precondition(lambda self: self._active())
    @rule(data=st.data())
    def close_pr(self, data: st.DataObject) -> None:
        data.draw(st.sampled_from(self._active())).pull.state = "closed"

    @precondition(lambda self: self._active())
    @rule(data=st.data())
    def change_of_mind(self, data: st.DataObject) -> None:
        """The author undoes what made an entry stale: the PR reopened, the approved commit pushed back."""
        entry = data.draw(st.sampled_from(self._active()))
        entry.pull.state, entry.pull.head = "open", entry.approved

    @precondition(lambda self: self._active())
    @rule(data=st.data())
    def cancel_request(self, data: st.DataObject) -> None:
        data.draw(st.sampled_from(self._active())).cancel_by = "maint"

    @precondition(lambda self: self._active())
    @rule(data=st.data())
    def merged_by_hand(self, data: st.DataObject) -> None:
        entry = data.draw(st.sampled_from(self._active()))
        entry.pull.merged, entry.pull.state = True, "closed"
        self.train.base_history.append(self._new_sha("manual-merge"))

    @rule()
    def human_pushes_to_base(self) -> None:
        self.train.base_history.append(self._new_sha("human"))

    # -- invariants -----------------------------------------------------------------------------------------

    @invariant()
    def base_moves_only_to_green_candidates_and_nothing_merges_twice(self) -> None:
        assert self.train.violations == [], self.train.violations
        assert all(count == 1 for count in self.train.merged.values()), self.train.merged

    @invariant()
    def at_most_one_active_attempt_and_its_entries_are_testing(self) -> None:
        active = [a for a in self.train.attempts if a.state in ACTIVE_ATTEMPT_STATES]
        assert len(active) <= 1, active
        for attempt in active:
            for entry_id in attempt.entry_ids:
                assert self.train.entries[entry_id].state is EntryState.TESTING, (attempt, self.train.entries[entry_id])

    @invariant()
    def decide_is_deterministic(self) -> None:
        snapshot = self.train.snapshot()
        copy = replace(snapshot, entries=tuple(replace(e) for e in snapshot.entries))
        first, second = decide(snapshot), decide(copy)
        assert first == second, (first, second)

    def teardown(self) -> None:
        """Liveness: the interference stops, dependencies are met, CI answers every candidate (green), the
        clock runs past deadlines; asking the machine again, within a bound, ends every entry."""
        train = self.train
        for entry in train.entries.values():
            entry.ready = True
        for _ in range(200):
            if train.step():
                continue
            attempt = train.attempt
            waiting_for_ci = (AttemptState.TESTING, AttemptState.MERGING)
            if attempt is not None and attempt.candidate is not None and attempt.state in waiting_for_ci:
                statuses = train.statuses.setdefault(attempt.candidate, [])
                if not green(train.required, statuses):
                    statuses[:0] = [StatusView(c, "success") for c in CONTEXTS if not c.startswith(OWN)]
                    continue
            if attempt is not None and attempt.deadline is not None and train.now < attempt.deadline:
                train.now = attempt.deadline
                continue
            break
        assert train.violations == [], train.violations
        assert train.attempt is None, (train.attempt, train.entries)
        stuck = {e.id: e.state.value for e in train.entries.values() if e.state not in FINAL}
        assert not stuck, f"entries left without a final state: {stuck}; attempts: {train.attempts}"


QueueMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestQueueMachine = QueueMachine.TestCase


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
    assert (train.attempt, train.entries[1].state) == (None, EntryState.TESTING)
    train.entries[1].pull.head = head  # the author pushes the approved commit back
    for _ in range(20):
        if not train.step():
            attempt = train.attempt
            if attempt is None or attempt.candidate is None:
                break
            train.statuses.setdefault(attempt.candidate, []).insert(0, StatusView("ci/test", "success"))
    assert train.entries[1].state in FINAL, train.entries[1]


def test_a_candidate_turning_red_before_a_retried_merge_is_not_merged() -> None:
    """Found by the state machine (the retry used to push without looking): green, the merge decided and
    recorded, the process dies before the push, CI re-runs and reports failure, the gate retries the merge."""
    train = Train(RequiredChecks(("ci/test",)), Strategy.STAGING, URGENT)
    head = sha("pr", 1)
    train.entries[1] = Entry(1, Pull(1, head), head, T0, 0, EntryState.QUEUED)
    train.step()  # StartAttempt, candidate built, testing
    attempt = train.attempt
    assert attempt is not None and attempt.candidate is not None
    train.statuses[attempt.candidate] = [StatusView("ci/test", "success")]
    train.budget = 1
    train.step()  # "merging" recorded; the process dies before the fast-forward
    assert attempt.state is AttemptState.MERGING and train.base != attempt.candidate
    train.statuses[attempt.candidate].insert(0, StatusView("ci/test", "failure"))
    train.step()
    assert train.base != attempt.candidate, "the base moved to a candidate whose required check is red"
