"""Database rows → the queue machine's immutable views."""

from __future__ import annotations

from bot.db.models import Attempt, AttemptEntry, Entry, PullRequest
from bot.queue.model import (
    AttemptState,
    AttemptView,
    EntryState,
    EntryView,
    MergeMethod,
    PullView,
    StatusView,
    Strategy,
)


def entry_view(entry: Entry, pull: PullRequest) -> EntryView:
    return EntryView(
        id=entry.id,
        pull=PullView(
            number=pull.number,
            head_sha=pull.head_sha,
            state=pull.state,
            merged=pull.merged,
            merge_commit_sha=pull.merge_commit_sha,
        ),
        state=EntryState(entry.state),
        approved_sha=entry.approved_sha,
        queued_at=entry.queued_at,
        priority=entry.priority,
        method=MergeMethod(entry.merge_method),
        cancel_requested_by=entry.cancel_requested_by,
        single=entry.single,
    )


def attempt_view(
    attempt: Attempt,
    members: list[AttemptEntry],
    statuses: tuple[StatusView, ...] = (),
    *,
    landed: bool = False,
) -> AttemptView:
    return AttemptView(
        id=attempt.id,
        state=AttemptState(attempt.state),
        base_sha=attempt.base_sha,
        entry_ids=tuple(member.entry_id for member in members),
        candidate_sha=attempt.candidate_sha,
        deadline_at=attempt.deadline_at,
        strategy=Strategy(attempt.strategy),
        parent_id=attempt.parent_id,
        statuses=statuses,
        landed=landed,
        split_from=attempt.split_from,
        known_red=(attempt.reason_detail or {}).get("red") if "inherits" in (attempt.reason_detail or {}) else None,
        retries=attempt.retries or 0,
    )
