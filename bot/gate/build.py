"""Building an attempt's candidate: every entry's PR in the attempt's order, each onto the result of the ones
before it (``CandidateBuilder.chain``), on the bot's mirror. The gate records and pushes what comes out.

Merge and squash commits get their messages from the branch's templates (``merge_message``,
``squash_message``); a PR that changes the repository's merge-bot file is refused when that file cannot be
used (:func:`check_files`)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.config import TEMPLATE_FIELDS, RepoSettings
from bot.db.models import Attempt, Entry, PullRequest
from bot.git.candidates import BadConfig, Broken, CandidateBuilder, Chain, Conflict, Piece
from bot.git.mirror import Mirror
from bot.git.runner import GitRunner
from bot.queue.model import BuildFailure, EntryAddsNothing, EntryBadConfig, EntryConflicts, MergeMethod
from bot.repoconfig.file import PATHS, parse


async def build_candidate(
    git: GitRunner,
    mirror: Mirror,
    branch: str,
    attempt: Attempt,
    carried: Sequence[tuple[Entry, PullRequest]],
    settings: RepoSettings | None = None,
    judge: RepoSettings | None = None,
) -> Chain | Broken:
    """The attempt's candidate on its ``base_sha``. The committer date is the attempt's: rebuilding after a
    crash yields the very same commits. ``settings`` (the branch's) give the commit message templates; with
    ``judge`` (the bot's own settings), a PR that changes the merge-bot file is judged by the file it brings."""
    await mirror.fetch(
        f"+refs/heads/{branch}:refs/heads/{branch}",
        *(f"+refs/pull/{pull.number}/head:refs/merge-bot/pull/{pull.number}" for _, pull in carried),
    )
    templates = settings or RepoSettings()
    pieces = []
    for entry, pull in carried:
        authors = await co_authors(git, mirror, attempt.base_sha, entry) if _wants_co_authors(entry, templates) else ()
        pieces.append(piece(entry, pull, templates, authors))
    chain = await CandidateBuilder(git, mirror.path).chain(attempt.base_sha, pieces, committer_date=attempt.created_at)
    if isinstance(chain, Broken) or judge is None:
        return chain
    return await check_files(mirror, attempt.base_sha, chain, judge)


def piece(entry: Entry, pull: PullRequest, templates: RepoSettings | None = None, authors: Sequence[str] = ()) -> Piece:
    """An entry's PR as one piece of a chain, at its approved head, with its method's commit message (from the
    branch's templates; ``authors`` fill ``{co_authors}``)."""
    method = MergeMethod(entry.merge_method)
    settings = templates or RepoSettings()
    if method is MergeMethod.MERGE:
        message = render(settings.merge_message, entry, pull, authors)
    elif method is MergeMethod.SQUASH:
        message = render(settings.squash_message, entry, pull, authors)
    else:
        message = ""
    return Piece(entry.id, entry.approved_sha, method, message)


def render(template: str, entry: Entry, pull: PullRequest, authors: Sequence[str] = ()) -> str:
    """A commit message from a template (validated by the settings: only :data:`TEMPLATE_FIELDS`)."""
    values = {
        "title": pull.title,
        "number": pull.number,
        "body": pull.body,
        "author": pull.author,
        "approved_by": entry.approved_by,
        "co_authors": "\n".join(f"Co-authored-by: {who}" for who in authors),
    }
    assert set(values) == set(TEMPLATE_FIELDS)
    return template.format_map(values).strip()


def _wants_co_authors(entry: Entry, templates: RepoSettings) -> bool:
    method = MergeMethod(entry.merge_method)
    template = {MergeMethod.MERGE: templates.merge_message, MergeMethod.SQUASH: templates.squash_message}.get(method)
    return template is not None and "{co_authors}" in template


async def co_authors(git: GitRunner, mirror: Mirror, base_sha: str, entry: Entry) -> tuple[str, ...]:
    """``Name <email>`` of the authors of the PR's commits (``base..head``), each once, in the order they first
    appear; for a squash, not the first commit's author, whom the squash commit is authored by."""
    result = await git.run(
        mirror.path, "log", "--reverse", "--no-merges", "--format=%an <%ae>", entry.approved_sha, f"^{base_sha}"
    )
    names = list(dict.fromkeys(line for line in result.text.splitlines() if line.strip()))
    return tuple(names[1:] if MergeMethod(entry.merge_method) is MergeMethod.SQUASH else names)


async def check_files(mirror: Mirror, base_sha: str, chain: Chain, judge: RepoSettings) -> Chain | Broken:
    """The first PR of the chain that changes the merge-bot file to one that cannot be used, as broken: a bad
    file reaches a branch only by a direct push. (The rules its own landing is judged by are the base's.)"""
    before = await mirror.show(base_sha, PATHS)
    for index, link in enumerate(chain.links):
        after = await mirror.show(link.end_sha, PATHS)
        if after is not None and after != before:
            parsed = parse(after[1], after[0], judge)
            if isinstance(parsed, tuple):
                return Broken(link.key, BadConfig(after[0], str(parsed[0])), chain.links[:index])
        before = after
    return chain


def failure(broken: Broken) -> BuildFailure:
    """What the machine is told about the entry the build stopped at."""
    if isinstance(broken.result, Conflict):
        return EntryConflicts(broken.key, broken.result.paths)
    if isinstance(broken.result, BadConfig):
        return EntryBadConfig(broken.key, broken.result.path, broken.result.problem)
    return EntryAddsNothing(broken.key)
