"""Building an attempt's candidate: every entry's PR in the attempt's order, each onto the result of the ones
before it (``CandidateBuilder.chain``), on the bot's mirror. The gate records and pushes what comes out."""

from __future__ import annotations

from collections.abc import Sequence

from bot.db.models import Attempt, Entry, PullRequest
from bot.git.candidates import Broken, CandidateBuilder, Chain, Conflict, Piece
from bot.git.mirror import Mirror
from bot.git.runner import GitRunner
from bot.queue.model import BuildFailure, EntryAddsNothing, EntryConflicts, MergeMethod


async def build_candidate(
    git: GitRunner, mirror: Mirror, branch: str, attempt: Attempt, carried: Sequence[tuple[Entry, PullRequest]]
) -> Chain | Broken:
    """The attempt's candidate on its ``base_sha``. The committer date is the attempt's: rebuilding after a
    crash yields the very same commits."""
    await mirror.fetch(
        f"+refs/heads/{branch}:refs/heads/{branch}",
        *(f"+refs/pull/{pull.number}/head:refs/merge-bot/pull/{pull.number}" for _, pull in carried),
    )
    pieces = [piece(entry, pull) for entry, pull in carried]
    return await CandidateBuilder(git, mirror.path).chain(attempt.base_sha, pieces, committer_date=attempt.created_at)


def piece(entry: Entry, pull: PullRequest) -> Piece:
    """An entry's PR as one piece of a chain, at its approved head, with its method's commit message."""
    method = MergeMethod(entry.merge_method)
    if method is MergeMethod.MERGE:
        message = f"Merge pull request #{pull.number}: {pull.title}\n\nMerged by merge-bot."
    elif method is MergeMethod.SQUASH:
        message = f"{pull.title} (#{pull.number})\n\n{pull.body}".strip()
    else:
        message = ""
    return Piece(entry.id, entry.approved_sha, method, message)


def failure(broken: Broken) -> BuildFailure:
    """What the machine is told about the entry the build stopped at."""
    if isinstance(broken.result, Conflict):
        return EntryConflicts(broken.key, broken.result.paths)
    return EntryAddsNothing(broken.key)
