"""The rows behind one snapshot of a train, which the gate's steps carry out its actions on."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.db.models import Attempt, AttemptEntry, Entry, PullRequest, Repository, Train


@dataclass
class Running:
    """An active attempt's row and its entries, in the order their changes are stacked."""

    row: Attempt
    members: list[AttemptEntry]

    @property
    def entry_ids(self) -> tuple[int, ...]:
        return tuple(member.entry_id for member in self.members)

    def end_of(self, entry_id: int, candidate: str) -> str:
        """The commit of the candidate where the entry's change ends (the candidate, for its last entry)."""
        ends = {member.entry_id: member.end_sha for member in self.members}
        return ends.get(entry_id) or candidate


@dataclass
class Loaded:
    """The rows behind one snapshot, for carrying out its actions; ``attempts`` in chain order."""

    train: Train
    repo: Repository
    entries: dict[int, tuple[Entry, PullRequest]]
    attempts: dict[int, Running]
    bisections: list[tuple[Attempt, list[tuple[int, str]]]] = field(default_factory=list)  # unsettled

    def attempt(self, attempt_id: int) -> Running:
        """The attempt an action names (the machine only names attempts of its snapshot)."""
        return self.attempts[attempt_id]
