"""What the queue page, the JSON API and ``merge-bot status`` show: read-only queries → plain dataclasses.

Every view is built from the database alone (no forge call), in a handful of queries per request, and holds
only what the bot already makes public on the PRs: numbers, titles, authors, approvers, SHAs, check states
and links, reasons. :func:`jsonable` turns a view into the JSON the API serves (``openapi/merge-bot.yaml``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select, union
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot import holds
from bot.config import Settings
from bot.db.models import (
    Attempt,
    AttemptEntry,
    CommitStatus,
    Dependency,
    Entry,
    EntryEvent,
    PullRequest,
    Repository,
    Train,
)
from bot.db.queries import chain_order
from bot.db.views import entry_view
from bot.gate.strategies import plan_for
from bot.queue import machine, messages
from bot.queue.model import (
    ACTIVE_ATTEMPT_STATES,
    ACTIVE_ENTRY_STATES,
    AttemptState,
    BisectionOutcome,
    EntryState,
    Hold,
    HoldKind,
    Reason,
    Strategy,
)
from bot.queue.policy import QueuePolicy, bisect_parts
from bot.web import timeline

RECENT = 10  # finished entries shown per train
TIMELINE_ROWS = 40  # attempts in a train's timeline, at most
NO_CHAIN = QueuePolicy()  # one candidate at a time: the policy of views built without settings
FINAL_ENTRY_STATES = (EntryState.MERGED.value, EntryState.FAILED.value, EntryState.CANCELLED.value)
_ACTIVE_ENTRIES = [state.value for state in ACTIVE_ENTRY_STATES]
_ACTIVE_ATTEMPTS = [state.value for state in ACTIVE_ATTEMPT_STATES]


@dataclass(frozen=True, slots=True)
class Links:
    """Where things live: the forge (PR links) and the bot's own context (dropped from the checks shown);
    and the policy the trains are worked with (their window and ``max_parallel``)."""

    forge_url: str
    own_context: str = "merge-bot"
    policy: QueuePolicy = NO_CHAIN
    merge_windows: tuple[str, ...] = ()  # outside every one of them, each train is frozen

    def pull(self, repository: str, number: int) -> str:
        return f"{self.forge_url.rstrip('/')}/{repository}/pulls/{number}"


@dataclass(frozen=True, slots=True)
class PullRef:
    repository: str
    number: int
    title: str
    author: str
    url: str
    page: str


@dataclass(frozen=True, slots=True)
class Check:
    context: str
    state: str
    description: str
    target_url: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Batch:
    """The attempt a finished entry was last tested in, with every PR it carried, in order."""

    attempt_id: int
    pulls: tuple[PullRef, ...]
    split_from: int | None  # the red batch it is a part of, when it was found by bisecting
    text: str | None  # in words, when the PR was not tested alone ("tested in batch #14 with #3, #4")


@dataclass(frozen=True, slots=True)
class EntryRow:
    id: int
    pull: PullRef
    branch: str
    state: str
    position: int | None
    priority: int
    approved_by: str
    approved_sha: str
    trigger: str
    method: str
    queued_at: datetime
    finished_at: datetime | None
    reason: str | None
    reason_text: str | None
    dependencies: tuple[str, ...]
    blocked: str | None
    merged_sha: str | None
    tested_in: Batch | None  # merged and failed entries: the attempt that decided


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a bisected batch: its PRs, and where they stand (testing, waiting, passed, failed,
    cancelled)."""

    number: int
    pulls: tuple[PullRef, ...]
    state: str


@dataclass(frozen=True, slots=True)
class Bisection:
    """A red batch split into parts to find the PR at fault (the failed attempt ``attempt_id``), with what is
    known so far; ``outcome`` (culprit, flaky, inconclusive) once every entry it carried is final."""

    attempt_id: int
    pulls: tuple[PullRef, ...]
    reason: str | None
    context: str
    target_url: str
    outcome: str | None
    parts: tuple[Part, ...]
    known: str

    def part_of(self, number: int) -> Part | None:
        """The part carrying PR ``number``."""
        return next((part for part in self.parts if any(p.number == number for p in part.pulls)), None)


@dataclass(frozen=True, slots=True)
class AttemptRow:
    id: int
    branch: str
    state: str
    strategy: str
    base_sha: str
    candidate_sha: str | None
    ref: str | None
    pulls: tuple[PullRef, ...]
    checks: tuple[Check, ...]
    created_at: datetime
    deadline_at: datetime | None
    finished_at: datetime | None
    seconds_left: float | None
    reason: str | None
    parent_id: int | None  # the attempt whose candidate it is built on (None: on the base tip)
    split_from: int | None  # the red batch it is a part of
    part: int | None  # which part of that batch (1 or 2)
    bisection: Bisection | None  # that batch, and what is known of it so far
    note: str | None  # the two in words: "bisecting batch #12 (PRs #1, #2, #3, #4): part 1 of 2"
    outcome: str | None  # bisected: culprit, flaky, inconclusive; retried: flaky, confirmed; optimistic: flaky
    entry_ids: tuple[int, ...]  # the entries it carries, in order (``pulls`` are their PRs)
    retry_of: int | None  # the red attempt whose candidate this one tests again
    retries: int  # how many times this candidate has been re-tested, this attempt included
    retry_note: str | None  # a re-test in words: "re-test 1 of the candidate of attempt 11, red on ci/test"
    depth: int | None  # in a train's chain: how many attempts it is built on (0: on the base tip); else None
    landed_sha: str | None  # a landed attempt: the SHA its push moved the base to (shared by one push's attempts)
    optimistic: bool  # landed although pending or red, because a green candidate behind it landed
    started_at: datetime  # ``created_at``, but a re-test keeps the red one's (its commit date): when that ended


@dataclass(frozen=True, slots=True)
class FlakeRate:
    """One check context of a train: its flaky failures (by kind) out of the candidate results it gave."""

    context: str
    flakes: int
    results: int  # candidates this context reported a verdict on (success, failure, error, …), re-tests each
    bisection: int  # a red batch whose every part passed
    retry: int  # a PR red alone that passed when its candidate was tested again
    optimistic: int  # a red attempt landed by the green candidate behind it

    @property
    def rate(self) -> float | None:
        return self.flakes / self.results if self.results else None


@dataclass(frozen=True, slots=True)
class AdaptiveChoice:
    """With ``adaptive``: the batch size and window the gate last chose from the train's history, and why."""

    batch: int
    window: int
    reason: str


@dataclass(frozen=True, slots=True)
class HoldShown:
    """A freeze or a pause in force on a train: its own (scope branch), its repository's, or the merge
    windows' (``by`` None; ``until``: when the next window opens)."""

    kind: str
    scope: str
    reason: str
    by: str | None
    since: datetime | None
    until: datetime | None
    cancel_running: bool
    text: str  # in words, as the PRs' statuses say it


@dataclass(frozen=True, slots=True)
class TrainRow:
    id: int
    repository: str
    branch: str
    paused: bool  # a pause is in force
    frozen: bool  # a freeze is in force (its own, its repository's, or outside the merge windows)
    holds: tuple[HoldShown, ...]  # what holds it, its own first
    running: AttemptRow | None  # the first attempt of the chain (kept for the API's older readers)
    attempts: tuple[AttemptRow, ...]  # every active attempt, in chain order (each on the one before)
    queue: tuple[EntryRow, ...]
    waiting: tuple[EntryRow, ...]
    recent: tuple[EntryRow, ...]
    depth: int  # active entries: under test, queued and waiting
    flaky: Mapping[str, int]  # flaky failures per check context (bisections, re-tests, optimistic landings)
    window: int  # how deep the chain may speculate now
    max_parallel: int  # how deep it may ever speculate
    base_sha: str | None  # the base tip: what the chain's first attempt is built on, else the last landing
    landed_sha: str | None  # where the queue's last push moved the base
    landed_at: datetime | None  # and when
    flakes: tuple[FlakeRate, ...]  # per check context, by name
    adaptive: AdaptiveChoice | None  # with ``adaptive``: the batch size and window chosen, and why
    config_problem: str | None = None  # the branch's merge-bot file cannot be used: where, why, what stays in force


@dataclass(frozen=True, slots=True)
class Event:
    at: datetime
    kind: str
    reason: str | None
    text: str
    actor: str | None
    attempt_id: int | None
    detail: Mapping[str, Any]
    url: str | None  # where to read more (the failed check's run)


@dataclass(frozen=True, slots=True)
class EntryHistory:
    entry: EntryRow
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class PullHistory:
    pull: PullRef
    state: str
    merged: bool
    head_sha: str
    entries: tuple[EntryHistory, ...]


def links(settings: Settings) -> Links:
    return Links(
        forge_url=str(settings.gitea_url),
        own_context=settings.status_context,
        policy=policy(settings),
        merge_windows=settings.windows,
    )


def policy(settings: Settings) -> QueuePolicy:
    """The policy the gate works a train with (``Gate.policy``; a test holds the two together): the settings,
    capped by what the strategy can carry."""
    limit = plan_for(Strategy(settings.strategy)).max_entries
    chains = limit is None  # a strategy that tests the PR's own branch cannot build on another candidate
    return QueuePolicy(
        batch_max=min(settings.batch_max, limit) if limit else settings.batch_max,
        batch_wait_seconds=settings.batch_wait_seconds,
        bisect=settings.bisect,
        urgent_priority=settings.urgent_priority,
        max_parallel=settings.max_parallel if chains else 1,
        window=settings.window if chains else None,
        window_floor=min(settings.window_floor, settings.max_parallel) if chains else 1,
        optimistic=settings.optimistic and chains,
        flaky_retries=settings.flaky_retries,
        adaptive=settings.adaptive,
    )


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A read-only session on one snapshot, so a view never mixes two moments of the queue."""
    async with AsyncSession(engine) as session:
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})
        yield session


# -- words -------------------------------------------------------------------------------------------


def reason_text(reason: str | None, detail: Mapping[str, Any] | None, actor: str | None = None) -> str | None:
    """A reason code in the words the bot uses on the PR (``queue.messages``); unknown codes as they are."""
    if reason is None:
        return None
    try:
        code = Reason(reason)
    except ValueError:
        return reason.replace("_", " ")
    facts = dict(detail or {})
    if code is Reason.CANCELLED_BY_USER and (facts.get("by") or actor):
        return f"cancelled by {facts.get('by') or actor}"
    if code in (Reason.PR_CLOSED, Reason.PR_MERGED_OUTSIDE):
        return "PR closed" if code is Reason.PR_CLOSED else "merged outside the queue"
    if code in _REASON_WORDS:
        return _REASON_WORDS[code]
    return messages.status_description(code, facts)


_REASON_WORDS = {
    Reason.BASE_MOVED: "the base branch moved: rebuilt on the new tip",
    Reason.PREEMPTED: "made way for an urgent PR",
    Reason.DEPENDENCIES_MET: "dependencies merged",
    Reason.BISECTED: "its batch failed and is being bisected",
    Reason.CHAIN_BROKEN: "the attempt it was built on was rebuilt",
    Reason.FLAKY: "a flaky failure",
    Reason.RETRIED: "red alone: tested again on the same candidate",
    Reason.SKIPPED_BUILD: "already on the base tip and green: landed as it is",
    Reason.PAUSED: "the queue was paused and its running candidates stopped",
    Reason.REPOSITORY_UNMANAGED: "the repository is no longer managed",
    Reason.FROZEN: "the queue is frozen",
}

_EVENT_WORDS = {
    "queued": "queued",
    "waiting": "queued, waiting for dependencies or approvals",
    "dependencies_met": "joined the queue",
    "attempt_started": "test started",
    "candidate_built": "candidate pushed for CI",
    "requeued": "back in the queue",
    "merged": "merged",
    "failed": "failed",
    "cancelled": "cancelled",
    "rebuilt": "rebuilt",
}

_REBUILT_WORDS = {
    Reason.BASE_MOVED.value: "rebuilt on the new tip of the base branch",
    Reason.CHAIN_BROKEN.value: "rebuilt on the rebuilt attempt before it",
    Reason.CHECKS_FAILED.value: "rebuilt on top of the parts of a red batch",
    Reason.CI_TIMEOUT.value: "rebuilt on top of the parts of a red batch",
    Reason.PREEMPTED.value: "rebuilt behind an urgent PR",
}

_PART_STATES = {
    "testing": "being tested",
    "waiting": "back in line",
    "passed": "passed",
    "failed": "failed",
    "cancelled": "left the queue",
}

_OUTCOME_WORDS = {
    BisectionOutcome.CULPRIT.value: "settled: the PR at fault was found and rejected",
    BisectionOutcome.FLAKY.value: "settled: every part passed, so the batch's failure was flaky",
    BisectionOutcome.INCONCLUSIVE.value: "settled: PRs left the queue before the cause was found",
}


def check_name(context: str) -> str:
    """A check context as shown; a flaky batch that timed out has none."""
    return context or "(a deadline)"


def prs(pulls: Iterable[PullRef | int]) -> str:
    """PR numbers as "#1, #2"."""
    return ", ".join(f"#{pull if isinstance(pull, int) else pull.number}" for pull in pulls)


def batch_name(attempt_id: int, pulls: Iterable[PullRef | int]) -> str:
    return f"batch #{attempt_id} (PRs {prs(pulls)})"


def failure_text(reason: str | None, detail: Mapping[str, Any] | None) -> str:
    """Why a batch failed, without the leading "failed: " (e.g. "ci/test reported failure")."""
    text = reason_text(reason, detail) or "its checks failed"
    return text.removeprefix("failed: ")


def known_text(bisection: Bisection) -> str:
    """What a bisection has found so far, in words."""
    said = [f"the batch failed: {failure_text(bisection.reason, {'context': bisection.context})}"]
    for part in bisection.parts:
        said.append(f"part {part.number} ({prs(part.pulls)}) {_PART_STATES.get(part.state, part.state)}")
    if bisection.outcome:
        said.append(_OUTCOME_WORDS.get(bisection.outcome, bisection.outcome))
    return "; ".join(said)


def part_note(bisection: Bisection, part: int) -> str:
    return f"bisecting {batch_name(bisection.attempt_id, bisection.pulls)}: part {part} of {len(bisection.parts)}"


def retry_text(retries: int, red: Attempt) -> str:
    """A re-test in words: "re-test 1 of the candidate of attempt 11, red on ci/test"."""
    context = (red.reason_detail or {}).get("context")
    said = f"re-test {max(retries, 1)} of the candidate of attempt {red.id}"
    return said + (f", red on {context}" if context else ", red")


def batch_text(batch: Batch, number: int) -> str | None:
    """Which batch a finished PR was tested in, when not alone: "tested in batch #14 with #3, #4"."""
    others = [pull for pull in batch.pulls if pull.number != number]
    if not others and batch.split_from is None:
        return None
    text = f"tested in batch #{batch.attempt_id}" + (f" with {prs(others)}" if others else " alone")
    if batch.split_from is not None:
        text += f", split from batch #{batch.split_from}"
    return text


@dataclass(frozen=True, slots=True)
class _Context:
    """What an entry's events refer to: the attempts they name and the bisections those are parts of."""

    number: int
    attempts: Mapping[int, Attempt]
    bisections: Mapping[int, Bisection]


def event_text(event: EntryEvent, context: _Context | None = None) -> str:
    detail = event.detail or {}
    words = _EVENT_WORDS.get(event.kind, event.kind.replace("_", " "))
    sha = detail.get("sha")
    attempt = context.attempts.get(event.attempt_id) if context and event.attempt_id is not None else None
    if event.kind in ("queued", "waiting"):
        extra = [f"at {str(sha)[:10]}" if sha else "", f"by {event.actor}" if event.actor else ""]
        if detail.get("priority"):
            extra.append(f"priority {detail['priority']}")
        if detail.get("after"):
            extra.append("after " + ", ".join(str(ref) for ref in detail["after"]))
        return " ".join([words, *[part for part in extra if part]])
    if event.kind == "candidate_built" and sha:
        return f"{words}: {str(sha)[:10]} on {str(detail.get('ref', '')).removeprefix('refs/heads/')}"
    if event.kind == "attempt_started":
        text = f"{words} on {str(detail['base'])[:10]}" if detail.get("base") else words
        others = [n for n in detail.get("with", ()) if isinstance(n, int) and context and n != context.number]
        if others:
            text += f" in batch #{event.attempt_id} with {prs(others)}"
        split = context.bisections.get(attempt.split_from) if context and attempt and attempt.split_from else None
        if context and split is not None:
            part = split.part_of(context.number)
            if part is not None:
                text += f" ({part_note(split, part.number)})"
        return text
    if event.kind == "bisected":
        facts = attempt.reason_detail if attempt is not None else None
        bisection = context.bisections.get(event.attempt_id) if context and event.attempt_id is not None else None
        name = batch_name(bisection.attempt_id, bisection.pulls) if bisection else f"batch #{event.attempt_id}"
        return f"{name} failed: {failure_text(event.reason, facts)}; bisecting it to find the PR at fault"
    if event.kind == "rebuilt":
        return _REBUILT_WORDS.get(event.reason or "", "rebuilt without a PR that left the queue")
    if event.kind == "retried":
        check = detail.get("context") or "a required check"
        retry = f" (re-test {detail['retry']})" if detail.get("retry") else ""
        return f"{check} was red: tested again on the same candidate{retry}"
    if event.kind == "flaky":
        check = detail.get("context") or "a required check"
        return f"counted as a flaky failure of {check}: batch #{event.attempt_id} failed, yet every part of it passed"
    if event.reason and event.kind != "dependencies_met":
        text = reason_text(event.reason, detail, event.actor) or ""
        return text if text.startswith(words) else f"{words}: {text}"
    return words


def event_url(event: EntryEvent, attempts: Mapping[int, Attempt]) -> str | None:
    """The link of an event: its failed check's run, or for a bisection's events the batch's failed check."""
    detail = event.detail or {}
    if detail.get("target_url"):
        return str(detail["target_url"])
    attempt = attempts.get(event.attempt_id) if event.attempt_id is not None else None
    if event.kind in ("bisected", "flaky") and attempt is not None and (attempt.reason_detail or {}).get("target_url"):
        return str((attempt.reason_detail or {})["target_url"])
    return None


# -- queries -----------------------------------------------------------------------------------------


async def _holds_shown(
    session: AsyncSession, links: Links, now: datetime, repository_ids: set[int]
) -> dict[int, list[tuple[str | None, HoldShown]]]:
    """Per repository, the holds in force now with the branch each is on (None: all), the windows' last."""
    found: defaultdict[int, list[tuple[str | None, HoldShown]]] = defaultdict(list)
    for row in await holds.in_force(session, now):
        if row.repository_id in repository_ids:
            scope = "branch" if row.branch is not None else "repository"
            hold = Hold(HoldKind(row.kind), row.reason, row.actor, row.until, scope, row.cancel_running)
            found[row.repository_id].append((row.branch, _shown(hold, row.created_at)))
    outside = holds.window_hold(links.merge_windows, now)
    if outside is not None:
        for repository_id in repository_ids:
            found[repository_id].append((None, _shown(outside, None)))
    return found


def _shown(hold: Hold, since: datetime | None) -> HoldShown:
    reason = Reason.FROZEN if hold.kind is HoldKind.FREEZE else Reason.PAUSED
    words = messages.hold_words(reason, {"reason": hold.reason, "until": hold.until, "scope": hold.scope})
    if hold.by:
        words += f" (by {hold.by})"
    return HoldShown(hold.kind.value, hold.scope, hold.reason, hold.by, since, hold.until, hold.cancel_running, words)


async def trains(session: AsyncSession, links: Links, now: datetime, repository: str | None = None) -> list[TrainRow]:
    """Every train (of one repository when named), with its running attempt, its line and its last outcomes."""
    query = (
        select(Train, Repository)
        .join(Repository, Repository.id == Train.repository_id)
        .order_by(func.lower(Repository.owner), func.lower(Repository.name), Train.branch)
    )
    if repository is not None:
        owner, _, name = repository.partition("/")
        query = query.where(func.lower(Repository.owner) == owner.lower(), func.lower(Repository.name) == name.lower())
    found = (await session.execute(query)).all()
    if not found:
        return []
    ids = [train.id for train, _ in found]
    names = {train.id: (repo.full_name, train.branch) for train, repo in found}
    active = await _entry_rows(session, Entry.train_id.in_(ids), Entry.state.in_(_ACTIVE_ENTRIES))
    recent = await _recent(session, ids)
    attempts = await _attempts(session, links, now, Attempt.train_id.in_(ids), Attempt.state.in_(_ACTIVE_ATTEMPTS))
    rows = await _rows(session, links, names, [*active, *recent])
    rates = await flake_rates(session, ids, links.own_context)
    landings = await _last_landings(session, ids)
    held = await _holds_shown(session, links, now, {repo.id for _, repo in found})
    by_train: defaultdict[int, list[tuple[Entry, PullRequest]]] = defaultdict(list)
    for entry, pull in active:
        by_train[entry.train_id].append((entry, pull))
    result = []
    for train, repo in found:
        on_train = tuple(shown for branch, shown in held.get(repo.id, []) if branch in (None, train.branch))
        line = machine.queue_order(entry_view(entry, pull) for entry, pull in by_train[train.id])
        position = {view.id: index for index, view in enumerate(line, start=1)}
        queued = [dataclasses.replace(rows[view.id], position=position[view.id]) for view in line]
        waiting = [rows[e.id] for e, _ in by_train[train.id] if e.state == EntryState.WAITING.value]
        rows_of = {attempt.row.id: attempt.row for attempt in attempts if attempt.train_id == train.id}
        ordered = chain_order([x.attempt for x in attempts if x.train_id == train.id])
        chain = _with_depths([rows_of[a.id] for a in ordered])
        landed = landings.get(train.id)
        if chain:
            base_sha: str | None = chain[0].base_sha
        else:
            base_sha = landed.landed_sha if landed is not None else None
        flakes = rates.get(train.id, ())
        result.append(
            TrainRow(
                id=train.id,
                repository=names[train.id][0],
                branch=train.branch,
                paused=train.paused or any(shown.kind == HoldKind.PAUSE for shown in on_train),
                frozen=any(shown.kind == HoldKind.FREEZE for shown in on_train),
                holds=on_train,
                running=chain[0] if chain else None,
                attempts=tuple(chain),
                queue=tuple(queued),
                waiting=tuple(waiting),
                recent=tuple(rows[e.id] for e, _ in recent if e.train_id == train.id),
                depth=len(by_train[train.id]),
                flaky={rate.context: rate.flakes for rate in flakes if rate.flakes},
                window=window(links.policy, train),
                max_parallel=links.policy.max_parallel,
                base_sha=base_sha,
                landed_sha=landed.landed_sha if landed is not None else None,
                landed_at=landed.finished_at if landed is not None else None,
                flakes=flakes,
                adaptive=adaptive_choice(links.policy, train),
                config_problem=train.config_problem,
            )
        )
    return result


def adaptive_choice(policy: QueuePolicy, train: Train) -> AdaptiveChoice | None:
    """The gate's last adaptive choice for the train (``trains.adaptive``), when the policy is adaptive."""
    kept = train.adaptive or {}
    batch, depth = kept.get("batch"), kept.get("window")
    if not policy.adaptive or not isinstance(batch, int) or not isinstance(depth, int):
        return None
    return AdaptiveChoice(batch=batch, window=depth, reason=str(kept.get("reason") or ""))


def window(policy: QueuePolicy, train: Train) -> int:
    """How deep the train's chain may speculate now: the adaptive choice when there is one (the window rule
    does not move it), else the train's window within the policy's bounds."""
    choice = adaptive_choice(policy, train)
    return choice.window if choice is not None else policy.depth(train.window)


def _with_depths(chain: Sequence[AttemptRow]) -> list[AttemptRow]:
    """The chain's attempts, each with its depth: 0 on the base tip, one more than the attempt it is built on."""
    depths: dict[int, int] = {}
    placed = []
    for row in chain:
        depth = depths[row.parent_id] + 1 if row.parent_id in depths else 0
        depths[row.id] = depth
        placed.append(dataclasses.replace(row, depth=depth))
    return placed


async def history(
    session: AsyncSession, links: Links, now: datetime, train_ids: Sequence[int], hours: int = timeline.HOURS
) -> dict[int, list[AttemptRow]]:
    """Each train's attempts that ran in the last ``hours`` (the newest ``TIMELINE_ROWS``), oldest first."""
    if not train_ids:
        return {}
    since = now - timedelta(hours=hours)
    ranked = (
        select(
            Attempt.id.label("id"),
            func.row_number().over(partition_by=Attempt.train_id, order_by=Attempt.id.desc()).label("rank"),
        )
        .where(
            Attempt.train_id.in_(list(train_ids)),
            Attempt.created_at <= now,
            Attempt.finished_at.is_(None) | (Attempt.finished_at >= since),
        )
        .subquery()
    )
    shown = select(ranked.c.id).where(ranked.c.rank <= TIMELINE_ROWS).scalar_subquery()
    found = await _attempts(session, links, now, Attempt.id.in_(shown))
    by_train: dict[int, list[AttemptRow]] = {train_id: [] for train_id in train_ids}
    for attempt in sorted(found, key=lambda a: (a.row.started_at, a.row.id)):
        by_train[attempt.train_id].append(attempt.row)
    return by_train


async def _last_landings(session: AsyncSession, train_ids: Sequence[int]) -> dict[int, _Landing]:
    """Each train's newest landed attempt: where the queue last moved the base, and when."""
    query = (
        select(Attempt)
        .where(Attempt.train_id.in_(list(train_ids)), Attempt.state == AttemptState.DONE.value)
        .order_by(Attempt.train_id, Attempt.finished_at.desc().nulls_last(), Attempt.id.desc())
        .distinct(Attempt.train_id)
    )
    found = {}
    for attempt in (await session.execute(query)).scalars():
        sha = _landed_sha(attempt)
        if sha is not None:
            found[attempt.train_id] = _Landing(sha, attempt.finished_at)
    return found


@dataclass(frozen=True, slots=True)
class _Landing:
    landed_sha: str
    finished_at: datetime | None


def _landed_sha(attempt: Attempt) -> str | None:
    """The SHA a landed attempt's push moved the base to (older rows: its candidate, which the base moved to)."""
    if attempt.state != AttemptState.DONE.value:
        return None
    push = (attempt.reason_detail or {}).get("push")
    return str(push) if push else attempt.candidate_sha


async def entries(
    session: AsyncSession, links: Links, repository: str, *, states: Sequence[str] = (), limit: int = 50
) -> list[EntryRow] | None:
    """A repository's entries, newest first (``None`` when the bot never saw the repository)."""
    repo = await _repository(session, repository)
    if repo is None:
        return None
    conditions: list[Any] = [PullRequest.repository_id == repo.id]
    if states:
        conditions.append(Entry.state.in_(list(states)))
    found = await _entry_rows(session, *conditions, newest_first=True, limit=limit)
    names = await _train_names(session, {entry.train_id for entry, _ in found})
    rows = await _rows(session, links, names, found)
    return [rows[entry.id] for entry, _ in found]


async def attempts(
    session: AsyncSession, links: Links, now: datetime, repository: str, *, limit: int = 20
) -> list[AttemptRow] | None:
    """A repository's attempts, newest first (``None`` when the bot never saw the repository)."""
    repo = await _repository(session, repository)
    if repo is None:
        return None
    train_ids = select(Train.id).where(Train.repository_id == repo.id).scalar_subquery()
    found = await _attempts(session, links, now, Attempt.train_id.in_(train_ids), limit=limit)
    return [attempt.row for attempt in found]


async def pull_history(session: AsyncSession, links: Links, repository: str, number: int) -> PullHistory | None:
    """A PR's every entry, newest first, each with its audit log (``entry_events``) in order."""
    repo = await _repository(session, repository)
    if repo is None:
        return None
    pull = (
        await session.execute(
            select(PullRequest).where(PullRequest.repository_id == repo.id, PullRequest.number == number)
        )
    ).scalar_one_or_none()
    if pull is None:
        return None
    found = await _entry_rows(session, Entry.pull_request_id == pull.id, newest_first=True)
    names = await _train_names(session, {entry.train_id for entry, _ in found})
    rows = await _rows(session, links, names, found)
    events: defaultdict[int, list[Event]] = defaultdict(list)
    if found:
        query = (
            select(EntryEvent)
            .where(EntryEvent.entry_id.in_([entry.id for entry, _ in found]))
            .order_by(EntryEvent.at, EntryEvent.id)
        )
        logged = list((await session.execute(query)).scalars())
        named = {event.attempt_id for event in logged if event.attempt_id is not None}
        attempts = {
            attempt.id: attempt
            for attempt in (await session.execute(select(Attempt).where(Attempt.id.in_(named)))).scalars()
        }
        batches = {a.split_from for a in attempts.values() if a.split_from is not None}
        batches |= {event.attempt_id for event in logged if event.kind == "bisected" and event.attempt_id is not None}
        bisections = await _bisections(session, links, batches)
        context = _Context(number, attempts, bisections)
        for event in logged:
            events[event.entry_id].append(
                Event(
                    at=event.at,
                    kind=event.kind,
                    reason=event.reason,
                    text=event_text(event, context),
                    actor=event.actor,
                    attempt_id=event.attempt_id,
                    detail=dict(event.detail or {}),
                    url=event_url(event, attempts),
                )
            )
    return PullHistory(
        pull=_pull_ref(links, repo.full_name, pull),
        state="merged" if pull.merged else pull.state,
        merged=pull.merged,
        head_sha=pull.head_sha,
        entries=tuple(EntryHistory(rows[entry.id], tuple(events[entry.id])) for entry, _ in found),
    )


# -- helpers -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Attempt:
    train_id: int
    row: AttemptRow
    attempt: Attempt


async def _repository(session: AsyncSession, full_name: str) -> Repository | None:
    owner, _, name = full_name.partition("/")
    query = select(Repository).where(
        func.lower(Repository.owner) == owner.lower(), func.lower(Repository.name) == name.lower()
    )
    return (await session.execute(query)).scalar_one_or_none()


async def _train_names(session: AsyncSession, train_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    ids = list(train_ids)
    if not ids:
        return {}
    query = select(Train, Repository).join(Repository, Repository.id == Train.repository_id).where(Train.id.in_(ids))
    return {train.id: (repo.full_name, train.branch) for train, repo in (await session.execute(query)).all()}


async def _entry_rows(
    session: AsyncSession, *conditions: Any, newest_first: bool = False, limit: int | None = None
) -> list[tuple[Entry, PullRequest]]:
    query = select(Entry, PullRequest).join(PullRequest, PullRequest.id == Entry.pull_request_id).where(*conditions)
    query = query.order_by(Entry.id.desc() if newest_first else Entry.id)
    if limit is not None:
        query = query.limit(limit)
    return [(entry, pull) for entry, pull in (await session.execute(query)).all()]


async def _recent(session: AsyncSession, train_ids: list[int]) -> list[tuple[Entry, PullRequest]]:
    """The last ``RECENT`` finished entries of each train, newest first."""
    ranked = (
        select(
            Entry.id.label("id"),
            func.row_number()
            .over(partition_by=Entry.train_id, order_by=(Entry.finished_at.desc().nulls_last(), Entry.id.desc()))
            .label("rank"),
        )
        .where(Entry.train_id.in_(train_ids), Entry.state.in_(FINAL_ENTRY_STATES))
        .subquery()
    )
    query = (
        select(Entry, PullRequest)
        .join(PullRequest, PullRequest.id == Entry.pull_request_id)
        .join(ranked, ranked.c.id == Entry.id)
        .where(ranked.c.rank <= RECENT)
        .order_by(Entry.finished_at.desc().nulls_last(), Entry.id.desc())
    )
    return [(entry, pull) for entry, pull in (await session.execute(query)).all()]


async def _rows(
    session: AsyncSession,
    links: Links,
    names: Mapping[int, tuple[str, str]],
    found: Sequence[tuple[Entry, PullRequest]],
) -> dict[int, EntryRow]:
    needs: defaultdict[int, list[str]] = defaultdict(list)
    if found:
        query = (
            select(Dependency)
            .where(Dependency.entry_id.in_([entry.id for entry, _ in found]))
            .order_by(Dependency.owner, Dependency.repo, Dependency.number)
        )
        for dep in (await session.execute(query)).scalars():
            needs[dep.entry_id].append(f"{dep.owner}/{dep.repo}#{dep.number}")
    batches = await _batches(session, links, names, [entry for entry, _ in found if entry.state in _DECIDED])
    rows = {}
    for entry, pull in found:
        repository, branch = names.get(entry.train_id, ("", ""))
        here = repository.lower() + "#"
        detail = entry.reason_detail or {}
        if entry.merged_sha and "sha" not in detail:
            detail = {**detail, "sha": entry.merged_sha}
        rows[entry.id] = EntryRow(
            id=entry.id,
            pull=_pull_ref(links, repository, pull),
            branch=branch,
            state=entry.state,
            position=None,
            priority=entry.priority,
            approved_by=entry.approved_by,
            approved_sha=entry.approved_sha,
            trigger=entry.trigger,
            method=entry.merge_method,
            queued_at=entry.queued_at,
            finished_at=entry.finished_at,
            reason=entry.reason,
            reason_text=reason_text(entry.reason, detail, entry.cancel_requested_by),
            dependencies=tuple(
                "#" + ref.removeprefix(here) if ref.lower().startswith(here) else ref for ref in needs[entry.id]
            ),
            blocked=str(detail["blocked"]) if detail.get("blocked") else None,
            merged_sha=entry.merged_sha,
            tested_in=batches.get(entry.id),
        )
    return rows


_DECIDED = (EntryState.MERGED.value, EntryState.FAILED.value)


async def _batches(
    session: AsyncSession, links: Links, names: Mapping[int, tuple[str, str]], decided: Sequence[Entry]
) -> dict[int, Batch]:
    """The last attempt each of these entries was tested in, with the PRs it carried."""
    if not decided:
        return {}
    last = (
        await session.execute(
            select(AttemptEntry.entry_id, func.max(AttemptEntry.attempt_id))
            .where(AttemptEntry.entry_id.in_([entry.id for entry in decided]))
            .group_by(AttemptEntry.entry_id)
        )
    ).all()
    attempt_of = {entry_id: attempt_id for entry_id, attempt_id in last}
    if not attempt_of:
        return {}
    members = (
        await session.execute(
            select(AttemptEntry.attempt_id, Attempt.split_from, PullRequest)
            .join(Attempt, Attempt.id == AttemptEntry.attempt_id)
            .join(Entry, Entry.id == AttemptEntry.entry_id)
            .join(PullRequest, PullRequest.id == Entry.pull_request_id)
            .where(AttemptEntry.attempt_id.in_(set(attempt_of.values())))
            .order_by(AttemptEntry.attempt_id, AttemptEntry.position)
        )
    ).all()
    repository = {entry.id: names.get(entry.train_id, ("", ""))[0] for entry in decided}
    carried: defaultdict[int, list[PullRequest]] = defaultdict(list)
    split: dict[int, int | None] = {}
    for attempt_id, split_from, pull in members:
        carried[attempt_id].append(pull)
        split[attempt_id] = split_from
    numbers = {entry.id: entry.pull_request_id for entry in decided}
    found = {}
    for entry_id, attempt_id in attempt_of.items():
        pulls = tuple(_pull_ref(links, repository[entry_id], pull) for pull in carried[attempt_id])
        batch = Batch(attempt_id, pulls, split.get(attempt_id), None)
        number = next((p.number for p in carried[attempt_id] if p.id == numbers[entry_id]), 0)
        found[entry_id] = dataclasses.replace(batch, text=batch_text(batch, number))
    return found


async def _bisections(session: AsyncSession, links: Links, attempt_ids: Iterable[int]) -> dict[int, Bisection]:
    """These red batches (attempts that ended ``bisected``), each with its parts and where they stand."""
    ids = sorted(set(attempt_ids))
    if not ids:
        return {}
    batches = (
        await session.execute(select(Attempt).where(Attempt.id.in_(ids), Attempt.reason == Reason.BISECTED.value))
    ).scalars()
    found = {attempt.id: attempt for attempt in batches}
    if not found:
        return {}
    members = (
        await session.execute(
            select(AttemptEntry.attempt_id, Entry.id, Entry.state, PullRequest, Repository)
            .join(Entry, Entry.id == AttemptEntry.entry_id)
            .join(PullRequest, PullRequest.id == Entry.pull_request_id)
            .join(Repository, Repository.id == PullRequest.repository_id)
            .where(AttemptEntry.attempt_id.in_(list(found)))
            .order_by(AttemptEntry.attempt_id, AttemptEntry.position)
        )
    ).all()
    carried: defaultdict[int, list[tuple[int, str, PullRef]]] = defaultdict(list)
    for attempt_id, entry_id, state, pull, repo in members:
        carried[attempt_id].append((entry_id, state, _pull_ref(links, repo.full_name, pull)))
    result = {}
    for attempt_id, attempt in found.items():
        detail = attempt.reason_detail or {}
        entries = {entry_id: (state, pull) for entry_id, state, pull in carried[attempt_id]}
        order = [entry_id for entry_id, _, _ in carried[attempt_id]]
        parts = tuple(
            Part(number, tuple(entries[e][1] for e in part), _part_state([entries[e][0] for e in part]))
            for number, part in enumerate(_split_of(detail, order), start=1)
        )
        timed_out = "pending" in detail or "missing" in detail  # the batch's failure: a deadline, else a check
        failed = Reason.CI_TIMEOUT.value if timed_out else Reason.CHECKS_FAILED.value
        bisection = Bisection(
            attempt_id=attempt_id,
            pulls=tuple(pull for _, _, pull in carried[attempt_id]),
            reason=failed,
            context=str(detail.get("context") or ""),
            target_url=str(detail.get("target_url") or ""),
            outcome=str(detail["outcome"]) if detail.get("outcome") else None,
            parts=parts,
            known="",
        )
        result[attempt_id] = dataclasses.replace(bisection, known=known_text(bisection))
    return result


def _split_of(detail: Mapping[str, Any], order: Sequence[int]) -> list[tuple[int, ...]]:
    """The parts a bisected batch (its entries in ``order``) was split into: as the machine recorded them, or,
    for a batch split before parts were recorded, its two halves."""
    recorded = detail.get("parts")
    if isinstance(recorded, list) and sorted(e for part in recorded for e in part) == sorted(order):
        return [tuple(part) for part in recorded]
    return list(bisect_parts(order)) if len(order) > 1 else [tuple(order)]


def _part_state(states: Sequence[str]) -> str:
    """Where a part of a bisected batch stands, from its entries' states."""
    if any(state == EntryState.FAILED.value for state in states):
        return "failed"
    if any(state == EntryState.TESTING.value for state in states):
        return "testing"
    if any(state in (EntryState.QUEUED.value, EntryState.WAITING.value) for state in states):
        return "waiting"
    if any(state == EntryState.MERGED.value for state in states):
        return "passed"
    return "cancelled"


FLAKE_KINDS = ("bisection", "retry", "optimistic")


def _flake_kind() -> Any:
    """Which kind of flaky failure an attempt is, or NULL: a red batch whose every part passed (bisection), a
    PR red alone that passed when its candidate was tested again (retry), a red attempt landed by the green
    candidate behind it (optimistic)."""
    detail = Attempt.reason_detail
    return case(
        (Attempt.reason == Reason.BISECTED.value, FLAKE_KINDS[0]),
        (Attempt.reason == Reason.RETRIED.value, FLAKE_KINDS[1]),
        (and_(Attempt.state == AttemptState.DONE.value, detail["optimistic"].astext == "true"), FLAKE_KINDS[2]),
        else_=None,
    )


def _train_filter(train_ids: Sequence[int] | None) -> list[Any]:
    return [] if train_ids is None else [Attempt.train_id.in_(list(train_ids))]


async def flake_counts(
    session: AsyncSession, train_ids: Sequence[int] | None = None
) -> dict[int, dict[str, dict[str, int]]]:
    """Flaky failures per train, check context (empty: a batch that timed out) and kind (``FLAKE_KINDS``)."""
    context = func.coalesce(Attempt.reason_detail["context"].astext, "")
    kind = _flake_kind()
    query = (
        select(Attempt.train_id, context, kind, func.count())
        .where(
            Attempt.reason_detail["outcome"].astext == BisectionOutcome.FLAKY.value,
            # A part split without a CI run of its own (its tree was the batch's) repeats the batch's failure.
            Attempt.reason_detail["inherits"].astext.is_(None),
            kind.is_not(None),
            *_train_filter(train_ids),
        )
        .group_by(Attempt.train_id, context, kind)
        .order_by(Attempt.train_id, context, kind)
    )
    counts: defaultdict[int, dict[str, dict[str, int]]] = defaultdict(dict)
    for train_id, name, flake, count in await session.execute(query):
        counts[train_id].setdefault(name, {})[flake] = count
    return dict(counts)


async def flaky_counts(session: AsyncSession, train_ids: Sequence[int] | None = None) -> dict[int, dict[str, int]]:
    """Flaky failures per train and check context, every kind together."""
    return {
        train_id: {context: sum(kinds.values()) for context, kinds in contexts.items()}
        for train_id, contexts in (await flake_counts(session, train_ids)).items()
    }


async def result_counts(
    session: AsyncSession, train_ids: Sequence[int] | None, own_context: str
) -> dict[int, dict[str, int]]:
    """Candidate results per train and check context: the attempts whose candidate that context gave a verdict
    on (any state but pending), or whose recorded failure names it. A re-test is a result of its own; a part
    split without a CI run of its own is none."""
    detail = Attempt.reason_detail
    own_run = detail["inherits"].astext.is_(None)
    reported = (
        select(
            Attempt.train_id.label("train_id"), CommitStatus.context.label("context"), Attempt.id.label("attempt_id")
        )
        .join(Train, Train.id == Attempt.train_id)
        .join(
            CommitStatus,
            and_(CommitStatus.repository_id == Train.repository_id, CommitStatus.sha == Attempt.candidate_sha),
        )
        .where(
            CommitStatus.state != "pending",
            CommitStatus.context != own_context,
            ~CommitStatus.context.startswith(own_context + "/"),
            own_run,
            *_train_filter(train_ids),
        )
    )
    recorded = select(Attempt.train_id, func.coalesce(detail["context"].astext, ""), Attempt.id).where(
        detail["context"].astext.is_not(None), own_run, *_train_filter(train_ids)
    )
    results = union(reported, recorded).subquery()
    query = (
        select(results.c.train_id, results.c.context, func.count())
        .group_by(results.c.train_id, results.c.context)
        .order_by(results.c.train_id, results.c.context)
    )
    counts: defaultdict[int, dict[str, int]] = defaultdict(dict)
    for train_id, context, count in await session.execute(query):
        counts[train_id][context] = count
    return dict(counts)


async def flake_rates(
    session: AsyncSession, train_ids: Sequence[int] | None, own_context: str
) -> dict[int, tuple[FlakeRate, ...]]:
    """Per train, each check context that gave a result or flaked: its flakes out of its results."""
    flakes = await flake_counts(session, train_ids)
    results = await result_counts(session, train_ids, own_context)
    rates = {}
    for train_id in sorted(set(flakes) | set(results)):
        kinds, given = flakes.get(train_id, {}), results.get(train_id, {})
        rows = []
        for context in sorted(set(kinds) | set(given)):
            by_kind = kinds.get(context, {})
            count = sum(by_kind.values())
            rows.append(
                FlakeRate(
                    context=context,
                    flakes=count,
                    results=max(given.get(context, 0), count),
                    bisection=by_kind.get(FLAKE_KINDS[0], 0),
                    retry=by_kind.get(FLAKE_KINDS[1], 0),
                    optimistic=by_kind.get(FLAKE_KINDS[2], 0),
                )
            )
        rates[train_id] = tuple(rows)
    return rates


def rate_text(rate: FlakeRate) -> str:
    """A context's flake rate in words: "2 flaky of 10 results (20%)"."""
    if not rate.results:
        return f"{rate.flakes} flaky"
    results = f"{rate.results} result{'s' if rate.results != 1 else ''}"
    return f"{rate.flakes} flaky of {results} ({rate.flakes / rate.results:.0%})"


def _pull_ref(links: Links, repository: str, pull: PullRequest) -> PullRef:
    return PullRef(
        repository=repository,
        number=pull.number,
        title=pull.title,
        author=pull.author,
        url=links.pull(repository, pull.number),
        page=f"/queue/{repository}/pull/{pull.number}",
    )


async def _attempts(
    session: AsyncSession, links: Links, now: datetime, *conditions: Any, limit: int | None = None
) -> list[_Attempt]:
    query = select(Attempt, Train, Repository).join(Train, Train.id == Attempt.train_id)
    query = query.join(Repository, Repository.id == Train.repository_id).where(*conditions).order_by(Attempt.id.desc())
    if limit is not None:
        query = query.limit(limit)
    found = (await session.execute(query)).all()
    if not found:
        return []
    members = (
        await session.execute(
            select(AttemptEntry.attempt_id, AttemptEntry.entry_id, PullRequest)
            .join(Entry, Entry.id == AttemptEntry.entry_id)
            .join(PullRequest, PullRequest.id == Entry.pull_request_id)
            .where(AttemptEntry.attempt_id.in_([attempt.id for attempt, _, _ in found]))
            .order_by(AttemptEntry.attempt_id, AttemptEntry.position)
        )
    ).all()
    pulls: defaultdict[int, list[PullRequest]] = defaultdict(list)
    carried: defaultdict[int, list[int]] = defaultdict(list)
    for attempt_id, entry_id, pull in members:
        pulls[attempt_id].append(pull)
        carried[attempt_id].append(entry_id)
    checks = await _checks(session, links, [(repo.id, a.candidate_sha) for a, _, repo in found if a.candidate_sha])
    bisections = await _bisections(session, links, [a.split_from for a, _, _ in found if a.split_from is not None])
    retried = await _retried(session, [a.retry_of for a, _, _ in found if a.retry_of is not None])
    result = []
    for attempt, train, repo in found:
        left = (attempt.deadline_at - now).total_seconds() if attempt.deadline_at and not attempt.finished_at else None
        detail = attempt.reason_detail or {}
        row = AttemptRow(
            id=attempt.id,
            branch=train.branch,
            state=attempt.state,
            strategy=attempt.strategy,
            base_sha=attempt.base_sha,
            candidate_sha=attempt.candidate_sha,
            ref=attempt.ref.removeprefix("refs/heads/") if attempt.ref else None,
            pulls=tuple(_pull_ref(links, repo.full_name, pull) for pull in pulls[attempt.id]),
            checks=tuple(checks.get((repo.id, attempt.candidate_sha or ""), ())),
            created_at=attempt.created_at,
            deadline_at=attempt.deadline_at,
            finished_at=attempt.finished_at,
            seconds_left=max(0.0, left) if left is not None else None,
            reason=attempt.reason,
            parent_id=attempt.parent_id,
            split_from=attempt.split_from,
            part=None,
            bisection=None,
            note=None,
            outcome=str(detail.get("outcome") or "") or None,
            entry_ids=tuple(carried[attempt.id]),
            retry_of=attempt.retry_of,
            retries=attempt.retries,
            retry_note=retry_text(attempt.retries, retried[attempt.retry_of]) if attempt.retry_of in retried else None,
            depth=None,  # set for a train's chain (``trains``), where the attempts it is built on are known
            landed_sha=_landed_sha(attempt),
            optimistic=attempt.state == AttemptState.DONE.value and bool(detail.get("optimistic")),
            started_at=_started(attempt, retried.get(attempt.retry_of) if attempt.retry_of is not None else None),
        )
        bisection = bisections.get(attempt.split_from) if attempt.split_from is not None else None
        if bisection is not None and row.pulls:
            part = bisection.part_of(row.pulls[0].number)
            if part is not None:
                note = part_note(bisection, part.number)
                row = dataclasses.replace(row, part=part.number, bisection=bisection, note=note)
        result.append(_Attempt(train.id, row, attempt))
    return result


def _started(attempt: Attempt, red: Attempt | None) -> datetime:
    """When an attempt started: a re-test is opened when the red attempt it tests again ends (its own
    ``created_at`` is the red one's, the committer date of the very same commit)."""
    if red is not None and red.finished_at is not None and red.finished_at > attempt.created_at:
        return red.finished_at
    return attempt.created_at


async def _retried(session: AsyncSession, attempt_ids: Iterable[int]) -> dict[int, Attempt]:
    """The red attempts these re-test the candidates of."""
    ids = sorted(set(attempt_ids))
    if not ids:
        return {}
    return {a.id: a for a in (await session.execute(select(Attempt).where(Attempt.id.in_(ids)))).scalars()}


async def _checks(
    session: AsyncSession, links: Links, shas: list[tuple[int, str]]
) -> dict[tuple[int, str], list[Check]]:
    """The latest status per context of each (repository, SHA), the bot's own contexts left out."""
    found: defaultdict[tuple[int, str], list[Check]] = defaultdict(list)
    if not shas:
        return found
    own = links.own_context
    query = (
        select(CommitStatus)
        .where(
            CommitStatus.sha.in_([sha for _, sha in shas]),
            CommitStatus.repository_id.in_({repository for repository, _ in shas}),
            CommitStatus.context != own,
            ~CommitStatus.context.startswith(own + "/"),
        )
        .order_by(CommitStatus.context)
    )
    for status in (await session.execute(query)).scalars():
        found[(status.repository_id, status.sha)].append(
            Check(status.context, status.state, status.description, status.target_url, status.updated_at)
        )
    return found


def jsonable(value: Any) -> Any:
    """A view (dataclasses, tuples, datetimes, enums) as plain JSON values; datetimes in ISO 8601 with offset."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value
