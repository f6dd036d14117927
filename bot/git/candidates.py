"""Build candidate commits without a worktree: ``git merge-tree --write-tree`` + ``git commit-tree``.

Three merge methods, all working on object ids in a (bare) repository and writing only objects, never refs:

- :meth:`CandidateBuilder.rebase` re-applies each PR commit in order onto the base tip, the way
  ``git rebase <base>`` does by default: merge commits are skipped, commits whose change is already in the
  base (same patch id) are skipped, commits that become empty are dropped (commits that were empty to
  begin with are kept), and leading commits that already sit on the base tip are kept as they are.
  Author name, email, date and the message are kept; the committer is the runner's identity.
- :meth:`CandidateBuilder.merge` makes a merge commit with parents (base, head) and the caller's message.
- :meth:`CandidateBuilder.squash` makes one commit on the base with the merged tree, the caller's message
  and the PR author (by default the author of the PR's first commit).

Git 2.39 has neither ``merge-tree --merge-base`` nor ``git replay``. A cherry-pick of commit C onto O is
done as a merge of O' = ``commit-tree O^{tree} -p C^`` with C: their only merge base is C^, so the merge
applies exactly the change C^..C to O's tree.

Every build returns a typed result: :class:`Built`, :class:`Conflict` (with the conflicting paths) or
:class:`NothingToMerge` (the PR adds nothing to the base). Failures of git itself raise ``GitError``.

:meth:`CandidateBuilder.chain` stacks several PRs (an attempt's entries, in order), each built onto the result
of the ones before with its own method, so the candidate is exactly the chain of commits that will land
(rebase: each PR's commits rebased in turn; merge: one merge commit per PR; squash: one commit per PR). It
says where each PR's change ends (:class:`Link`), or which PR broke the chain (:class:`Broken`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bot.git.runner import GitError, GitResult, GitRunner
from bot.queue.model import MergeMethod

_AUTHOR_RE = re.compile(rb"^(?P<name>.*) <(?P<email>.*)> (?P<ts>-?\d+) (?P<tz>[+-]\d{4})$")
_CHERRY_PICK_BASE_MESSAGE = b"merge-bot: cherry-pick base\n"
_UNRELATED = "refusing to merge unrelated histories"


@dataclass(frozen=True)
class Signature:
    """Who and when: ``date`` is anything ``GIT_AUTHOR_DATE`` accepts (``@<epoch> <+hhmm>``), or None."""

    name: str
    email: str
    date: str | None = None


@dataclass(frozen=True)
class Built:
    """The candidate ``sha`` on top of ``base_sha``.

    ``commits`` are the PR's own commits the candidate carries, oldest first (their original ids);
    ``dropped`` are PR commits a rebase left out (merge commits, changes already in the base, commits
    that became empty).
    """

    sha: str
    base_sha: str
    commits: tuple[str, ...]
    dropped: tuple[str, ...] = ()


@dataclass(frozen=True)
class Conflict:
    """The PR does not apply: ``at_commit`` (the PR commit being applied, or the head) conflicts in ``paths``.

    ``messages`` are git's own lines, e.g. ``CONFLICT (content): Merge conflict in a.txt``.
    """

    paths: tuple[str, ...]
    at_commit: str
    messages: tuple[str, ...] = ()


@dataclass(frozen=True)
class NothingToMerge:
    """Everything the PR at ``head_sha`` changes is already in ``base_sha``."""

    base_sha: str
    head_sha: str


BuildResult = Built | Conflict | NothingToMerge


@dataclass(frozen=True)
class Piece:
    """One PR of a chain: ``key`` names it to the caller; ``message`` is the merge or squash commit's."""

    key: int
    head: str
    method: MergeMethod = MergeMethod.REBASE
    message: str = ""


@dataclass(frozen=True)
class Link:
    """A PR built into a chain: ``built.sha`` is the commit where its own change ends."""

    key: int
    built: Built

    @property
    def end_sha(self) -> str:
        return self.built.sha


@dataclass(frozen=True)
class Chain:
    """The candidate ``sha`` on ``base_sha``: every piece, in order, each on the one before."""

    sha: str
    base_sha: str
    links: tuple[Link, ...]


@dataclass(frozen=True)
class BadConfig:
    """The piece applies, but the merge-bot file it brings cannot be used (``problem``: where and why)."""

    path: str
    problem: str


@dataclass(frozen=True)
class Broken:
    """The piece ``key`` does not apply onto the ones before it (``links``, built): ``result`` says how."""

    key: int
    result: Conflict | NothingToMerge | BadConfig
    links: tuple[Link, ...] = ()


@dataclass(frozen=True)
class Commit:
    """The parts of a commit object a rebase needs."""

    sha: str
    tree: str
    parents: tuple[str, ...]
    author: Signature
    message: bytes
    encoding: str | None = None


@dataclass
class RebasePlan:
    """What ``git rebase`` would consider: every PR commit in order, the non-merge ones to pick (with
    their parents), and those whose patch is already in the base."""

    order: list[str] = field(default_factory=list)
    picks: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    patch_same: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class MergeTree:
    """The parsed output of ``git merge-tree --write-tree -z --name-only``."""

    tree: str
    paths: tuple[str, ...]
    messages: tuple[str, ...]
    clean: bool


def git_date(moment: datetime) -> str:
    """``moment`` (timezone-aware) in git's internal date format, ``@<epoch> <+hhmm>``."""
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError("a commit date must be timezone-aware")
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"@{int(moment.timestamp())} {sign}{hours:02d}{mins:02d}"


def parse_merge_tree(stdout: bytes, clean: bool) -> MergeTree:
    """Parse ``merge-tree --write-tree -z --name-only`` output: tree, conflicted paths, messages.

    The layout is ``<tree> NUL <path> NUL ... NUL NUL`` followed by messages, each
    ``<n> NUL <path>*n NUL <type> NUL <text> NUL``.
    """
    fields = stdout.split(b"\0")
    tree = fields[0].decode("ascii").strip()
    index = 1
    paths: list[str] = []
    while index < len(fields) and fields[index]:
        paths.append(_decode(fields[index]))
        index += 1
    index += 1
    messages: list[str] = []
    while index < len(fields) and fields[index]:
        count = int(fields[index])
        index += 1 + count + 1
        if index < len(fields):
            messages.append(_decode(fields[index]).rstrip("\n"))
        index += 1
    return MergeTree(tree, tuple(paths), tuple(messages), clean)


def parse_commit(sha: str, raw: bytes) -> Commit:
    """Parse a raw commit object (``git cat-file commit``).

    A message in another encoding (an ``encoding`` header) is re-encoded to UTF-8, as ``git rebase`` does;
    only an encoding Python does not know is kept, to be declared again on the new commit.
    """
    header, _, message = raw.partition(b"\n\n")
    fields: dict[bytes, list[bytes]] = {}
    for line in header.split(b"\n"):
        key, _, value = line.partition(b" ")
        fields.setdefault(key, []).append(value)
    if not fields.get(b"tree") or not fields.get(b"author"):
        raise ValueError(f"commit {sha} has no tree or author")
    author = fields[b"author"][0]
    encoding = fields[b"encoding"][0].decode("ascii", "replace") if b"encoding" in fields else None
    if encoding is not None:
        message, author, encoding = _to_utf8(message, author, encoding)
    parents = tuple(parent.decode("ascii") for parent in fields.get(b"parent", []))
    return Commit(sha, fields[b"tree"][0].decode("ascii"), parents, _parse_signature(author), message, encoding)


def _to_utf8(message: bytes, author: bytes, encoding: str) -> tuple[bytes, bytes, str | None]:
    try:
        return message.decode(encoding).encode(), author.decode(encoding).encode(), None
    except (LookupError, UnicodeError):
        return message, author, encoding


def parse_cat_file_batch(stdout: bytes) -> dict[str, Commit]:
    """Parse ``git cat-file --batch`` output holding only commit objects."""
    commits: dict[str, Commit] = {}
    position = 0
    while position < len(stdout):
        end = stdout.index(b"\n", position)
        sha, kind, size = stdout[position:end].decode("ascii").split(" ")
        if kind != "commit":
            raise ValueError(f"{sha} is a {kind}, not a commit")
        start = end + 1
        commits[sha] = parse_commit(sha, stdout[start : start + int(size)])
        position = start + int(size) + 1
    return commits


def _parse_signature(value: bytes) -> Signature:
    match = _AUTHOR_RE.match(value)
    if match is None:
        raise ValueError(f"malformed signature {value!r}")
    name = match["name"].decode("utf-8", "surrogateescape")
    email = match["email"].decode("utf-8", "surrogateescape")
    return Signature(name, email, f"@{match['ts'].decode()} {match['tz'].decode()}")


def _decode(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _check_revs(*revs: str) -> None:
    for rev in revs:
        if not rev or rev.startswith("-"):
            raise ValueError(f"not a revision: {rev!r}")


class CandidateBuilder:
    """Builds candidates in the repository at ``repo`` (typically the bot's bare mirror).

    ``committer_date`` (timezone-aware) fixes the committer date of every commit a build writes, so the
    same inputs give the same candidate id; without it git uses the current time.
    """

    def __init__(self, runner: GitRunner, repo: Path) -> None:
        self._runner = runner
        self._repo = repo

    async def chain(
        self, base: str, pieces: Sequence[Piece], *, committer_date: datetime | None = None
    ) -> Chain | Broken:
        """Each piece built onto the result of the ones before it, the first onto ``base``."""
        if not pieces:
            raise ValueError("a chain needs at least one piece")
        current = base
        links: list[Link] = []
        for piece in pieces:
            result = await self.build(current, piece, committer_date=committer_date)
            if not isinstance(result, Built):
                return Broken(piece.key, result, tuple(links))
            links.append(Link(piece.key, result))
            current = result.sha
        return Chain(current, links[0].built.base_sha, tuple(links))

    async def build(self, base: str, piece: Piece, *, committer_date: datetime | None = None) -> BuildResult:
        """One piece onto ``base``, by its method."""
        if piece.method is MergeMethod.MERGE:
            return await self.merge(base, piece.head, message=piece.message, committer_date=committer_date)
        if piece.method is MergeMethod.SQUASH:
            return await self.squash(base, piece.head, message=piece.message, committer_date=committer_date)
        return await self.rebase(base, piece.head, committer_date=committer_date)

    async def rebase(self, base: str, head: str, *, committer_date: datetime | None = None) -> BuildResult:
        """The PR commits in ``base..head`` re-applied one by one onto ``base``, as ``git rebase`` would."""
        base_sha, head_sha = await self._resolve(base, head)
        plan = await self._rebase_plan(base_sha, head_sha)
        if not plan.picks:
            return NothingToMerge(base_sha, head_sha)
        commits = await self._read_commits([base_sha, *plan.picks, *plan.parents])
        date = git_date(committer_date) if committer_date else None
        current, tree = base_sha, commits[base_sha].tree
        applied: list[str] = []
        for sha in plan.picks:
            step = await self._pick(commits[sha], current, tree, sha in plan.patch_same, commits, date)
            if isinstance(step, Conflict):
                return step
            if step is not None:
                current, tree = step
                applied.append(sha)
        if current == base_sha:
            return NothingToMerge(base_sha, head_sha)
        dropped = tuple(sha for sha in plan.order if sha not in applied)
        return Built(current, base_sha, tuple(applied), dropped)

    async def merge(
        self,
        base: str,
        head: str,
        *,
        message: str,
        author: Signature | None = None,
        committer_date: datetime | None = None,
    ) -> BuildResult:
        """A merge commit with parents (base, head); the author is ``author`` or else the bot."""
        base_sha, head_sha = await self._resolve(base, head)
        pr_commits = await self._range(base_sha, head_sha)
        if not pr_commits:
            return NothingToMerge(base_sha, head_sha)
        merged = await self._merge_tree(base_sha, head_sha)
        if not merged.clean:
            return _conflict(merged, head_sha)
        date = git_date(committer_date) if committer_date else None
        sha = await self._commit_tree(merged.tree, (base_sha, head_sha), _message(message), author, date)
        return Built(sha, base_sha, pr_commits)

    async def squash(
        self,
        base: str,
        head: str,
        *,
        message: str,
        author: Signature | None = None,
        committer_date: datetime | None = None,
    ) -> BuildResult:
        """One commit on ``base`` with the merged tree; the author is ``author`` or the first commit's."""
        base_sha, head_sha = await self._resolve(base, head)
        pr_commits = await self._range(base_sha, head_sha)
        if not pr_commits:
            return NothingToMerge(base_sha, head_sha)
        merged = await self._merge_tree(base_sha, head_sha)
        if not merged.clean:
            return _conflict(merged, head_sha)
        commits = await self._read_commits([base_sha, pr_commits[0]])
        if merged.tree == commits[base_sha].tree:
            return NothingToMerge(base_sha, head_sha)
        date = git_date(committer_date) if committer_date else None
        who = author or commits[pr_commits[0]].author
        sha = await self._commit_tree(merged.tree, (base_sha,), _message(message), who, date)
        return Built(sha, base_sha, pr_commits)

    async def _resolve(self, base: str, head: str) -> tuple[str, str]:
        _check_revs(base, head)
        result = await self._git("rev-parse", f"{base}^{{commit}}", f"{head}^{{commit}}")
        base_sha, head_sha = result.text.split()
        return base_sha, head_sha

    async def _range(self, base_sha: str, head_sha: str) -> tuple[str, ...]:
        result = await self._git("rev-list", "--reverse", "--topo-order", head_sha, f"^{base_sha}")
        return tuple(result.text.split())

    async def _rebase_plan(self, base_sha: str, head_sha: str) -> RebasePlan:
        result = await self._git(
            "rev-list",
            "--reverse",
            "--topo-order",
            "--right-only",
            "--cherry-mark",
            "--parents",
            f"{base_sha}...{head_sha}",
        )
        plan = RebasePlan()
        for line in result.text.splitlines():
            sha, *parents = line[1:].split()
            plan.order.append(sha)
            if len(parents) > 1:
                continue
            plan.picks.append(sha)
            plan.parents.extend(parents)
            if line[0] == "=":
                plan.patch_same.add(sha)
        return plan

    async def _pick(
        self,
        commit: Commit,
        current: str,
        tree: str,
        patch_same: bool,
        commits: dict[str, Commit],
        date: str | None,
    ) -> tuple[str, str] | Conflict | None:
        """One rebase step onto ``current`` (whose tree is ``tree``): the new commit and tree, a conflict,
        or None when ``git rebase`` would drop the commit (its change is already there)."""
        if patch_same and not await self._was_empty(commit, commits):
            return None
        if commit.parents == (current,):
            return commit.sha, commit.tree
        merged = await self._cherry_pick(tree, commit, date)
        if not merged.clean:
            return _conflict(merged, commit.sha)
        if merged.tree == tree and not await self._was_empty(commit, commits):
            return None
        message, author, encoding = commit.message, commit.author, commit.encoding
        new = await self._commit_tree(merged.tree, (current,), message, author, date, encoding)
        return new, merged.tree

    async def _read_commits(self, shas: list[str]) -> dict[str, Commit]:
        wanted = list(dict.fromkeys(shas))
        result = await self._git("cat-file", "--batch", stdin="".join(f"{s}\n" for s in wanted).encode())
        return parse_cat_file_batch(result.stdout)

    async def _cherry_pick(self, onto_tree: str, commit: Commit, date: str | None) -> MergeTree:
        """Merge ``commit`` into ``onto_tree`` with ``commit``'s parent (or nothing, for a root) as base."""
        side = await self._commit_tree(onto_tree, commit.parents, _CHERRY_PICK_BASE_MESSAGE, None, date)
        return await self._merge_tree(side, commit.sha, unrelated=not commit.parents)

    async def _was_empty(self, commit: Commit, commits: dict[str, Commit]) -> bool:
        """Whether ``commit`` changed nothing relative to its parent (``git rebase`` keeps those)."""
        if commit.parents:
            return commit.tree == commits[commit.parents[0]].tree
        empty_tree = await self._git("mktree", stdin=b"")
        return commit.tree == empty_tree.text.strip()

    async def _merge_tree(self, ours: str, theirs: str, *, unrelated: bool = False) -> MergeTree:
        args = ["merge-tree", "--write-tree", "-z", "--name-only"]
        if unrelated:
            args.append("--allow-unrelated-histories")
        result = await self._git(*args, ours, theirs, ok_returncodes=(0, 1, 128))
        if result.returncode == 128:
            if _UNRELATED in result.stderr:
                return MergeTree("", (), (_UNRELATED,), clean=False)
            raise GitError(result.argv, result.returncode, result.stderr)
        return parse_merge_tree(result.stdout, clean=result.returncode == 0)

    async def _commit_tree(
        self,
        tree: str,
        parents: tuple[str, ...],
        message: bytes,
        author: Signature | None,
        date: str | None,
        encoding: str | None = None,
    ) -> str:
        env: dict[str, str] = {}
        if author is not None:
            env.update(GIT_AUTHOR_NAME=author.name, GIT_AUTHOR_EMAIL=author.email)
        author_date = author.date if author is not None and author.date else date
        if author_date:
            env["GIT_AUTHOR_DATE"] = author_date
        if date:
            env["GIT_COMMITTER_DATE"] = date
        config = ("-c", f"i18n.commitEncoding={encoding}") if encoding else ()
        args = [arg for parent in parents for arg in ("-p", parent)]
        result = await self._git(*config, "commit-tree", tree, *args, stdin=message, env=env)
        return result.text.strip()

    async def _git(
        self,
        *args: str,
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
        ok_returncodes: tuple[int, ...] = (0,),
    ) -> GitResult:
        return await self._runner.run(self._repo, *args, stdin=stdin, env=env, ok_returncodes=ok_returncodes)


def _conflict(merged: MergeTree, at_commit: str) -> Conflict:
    conflicts = tuple(line for line in merged.messages if line.startswith("CONFLICT")) or merged.messages
    return Conflict(merged.paths, at_commit, conflicts)


def _message(text: str) -> bytes:
    return text.encode("utf-8") if text.endswith("\n") else f"{text}\n".encode()
