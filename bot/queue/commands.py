"""The comment grammar, pure: a comment body → the command it holds.

What counts as a command (each rule is a row in ``tests/test_commands.py``):

- A command is a line that starts with ``/merge``, followed by whitespace or the end of the line. Up to three
  spaces may come first; four or more (or a tab) make the line indented code or text nested in a list, and
  it is not a command. ``/merged``, ``/merge-queue`` and ``- /merge`` are not commands; ``please /merge`` is
  not either (the command must start the line).
- Lines inside fenced code (```` ``` ```` or ``~~~``, with or without an info string, unterminated fences
  running to the end), quoted lines (``>``, ``>>``, ``> >``) and HTML comments (``<!-- ... -->``, also over
  several lines) are never commands. A fence that opens a list item (``- ```sh``) counts as a fence.
  An HTML comment after a command is dropped before parsing: ``/merge <!-- note -->`` reads as ``/merge``.
  An unquoted line right after a quote is the author's own line and may be a command, although Markdown
  would render it inside the quote: quoting (by hand or with Gitea's "Quote reply") marks every line.
- The grammar is lowercase, like Gitea's own UI and bors: ``/MERGE``, ``/merge Cancel`` or ``P=2`` are not
  obeyed but answered with the lowercase spelling, so nothing acts on a guess.
- One command per comment, so a comment acts at most once: a comment with two command lines is answered
  as :class:`Invalid` and neither acts.
- The whole line must parse: trailing words (``/merge please``), a repeated option, an unknown method or a
  malformed reference make the line :class:`Invalid`, and the bot says why instead of queueing with a
  default the author did not ask for.

Forms: ``/merge`` queues the PR at its current head; ``/merge cancel``, ``/merge retry`` and
``/merge status`` do what they say and take nothing after them. ``/merge freeze REASON`` (a repository
admin's) freezes the whole repository's queue, the rest of the line being the reason (required, at most
``REASON_LIMIT`` characters, runs of whitespace read as one space); ``/merge unfreeze`` lifts that freeze and
takes nothing after it. Options after ``/merge``, in any order and
each at most once: ``p=N`` (or ``priority=N``; a whole number within ±``PRIORITY_LIMIT``), ``method=rebase|
merge|squash``, ``single`` (test this PR in a batch of its own) and ``after REF...`` where each REF is
``#N`` (this repository) or ``owner/repo#N``, separated by spaces or commas; the references run up to the
next ``key=value`` option or ``single``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bot.queue.model import MergeMethod

PREFIX = "/merge"
PRIORITY_LIMIT = 1_000_000
NUMBER_LIMIT = 2**31 - 1  # PR numbers are stored as 32-bit integers
REASON_LIMIT = 500  # a freeze's reason (bot.holds keeps the same limit)

_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # Markdown's line endings; not str.splitlines (U+2028, \f, ...)
_LIST_MARKER = re.compile(r"(?:[-+*]|[0-9]{1,9}[.)]) +")
_FENCE = re.compile(r"(`{3,}|~{3,})(.*)")
_NAME = r"[A-Za-z0-9_.-]+"
_REF = re.compile(rf"(?:({_NAME})/({_NAME}))?#([0-9]{{1,10}})", re.ASCII)
_PRIORITY = re.compile(r"-?[0-9]{1,7}", re.ASCII)
_REF_SEPARATOR = re.compile(r"[\s,]+")
_EXPECTED = (
    "expected p=N, method=rebase|merge|squash, single, after #N, or one of cancel, retry, status, freeze, unfreeze"
)
_FLAGS = frozenset({"single"})


@dataclass(frozen=True, slots=True)
class DepRef:
    """A PR this one depends on. ``owner``/``repo`` are ``None`` for "this repository".

    Gitea compares owner and repository names without regard to case, so they are kept lowercased:
    ``Org/Repo#5`` and ``org/repo#5`` are the same dependency.
    """

    owner: str | None
    repo: str | None
    number: int

    def __post_init__(self) -> None:
        if (self.owner is None) != (self.repo is None):
            raise ValueError("a dependency names both owner and repository, or neither")
        if not 1 <= self.number <= NUMBER_LIMIT:
            raise ValueError(f"PR number out of range: {self.number}")
        if self.owner is not None and self.repo is not None:
            object.__setattr__(self, "owner", self.owner.lower())
            object.__setattr__(self, "repo", self.repo.lower())

    @property
    def qualified(self) -> bool:
        return self.owner is not None

    def resolve(self, owner: str, repo: str) -> DepRef:
        """This reference with the repository filled in: ``#5`` in ``owner/repo`` is ``owner/repo#5``."""
        return self if self.qualified else DepRef(owner, repo, self.number)

    def relative_to(self, owner: str, repo: str) -> DepRef:
        """The shortest way to write this reference from ``owner/repo``: ``#5`` when it is the same repo."""
        if self.owner == owner.lower() and self.repo == repo.lower():
            return DepRef(None, None, self.number)
        return self

    def __str__(self) -> str:
        return f"#{self.number}" if self.owner is None else f"{self.owner}/{self.repo}#{self.number}"


@dataclass(frozen=True, slots=True)
class Queue:
    priority: int = 0
    method: MergeMethod | None = None
    after: tuple[DepRef, ...] = ()
    single: bool = False  # tested alone, never in a batch with other PRs


@dataclass(frozen=True, slots=True)
class Cancel:
    pass


@dataclass(frozen=True, slots=True)
class Retry:
    pass


@dataclass(frozen=True, slots=True)
class StatusQuery:
    pass


@dataclass(frozen=True, slots=True)
class Freeze:
    """Freeze the repository's queue (every branch): nothing lands until ``/merge unfreeze``."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unfreeze:
    pass


@dataclass(frozen=True, slots=True)
class Invalid:
    line: str
    reason: str


Command = Queue | Cancel | Retry | StatusQuery | Freeze | Unfreeze | Invalid

_VERBS: dict[str, Command] = {
    "cancel": Cancel(),
    "retry": Retry(),
    "status": StatusQuery(),
    "unfreeze": Unfreeze(),
}
_OPTIONS = {"p": "priority", "priority": "priority", "method": "method"}
_METHODS = frozenset(method.value for method in MergeMethod)


# -- which lines may hold a command -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Fence:
    char: str
    length: int
    column: int


def _fence_opener(line: str) -> _Fence | None:
    """The fence this line opens: up to three spaces, then optionally list markers, then ``` or ~~~."""
    rest = line.lstrip(" ")
    column = len(line) - len(rest)
    if column > 3:
        return None
    while marker := _LIST_MARKER.match(rest):
        column += marker.end()
        rest = rest[marker.end() :]
    found = _FENCE.fullmatch(rest)
    if found is None:
        return None
    run, info = found.groups()
    if run[0] == "`" and "`" in info:  # ```inline``` is a code span, not a fence
        return None
    return _Fence(run[0], len(run), column)


def _closes(fence: _Fence, line: str) -> bool:
    rest = line.lstrip(" ")
    if len(line) - len(rest) > max(3, fence.column):
        return False
    run = len(rest) - len(rest.lstrip(fence.char))
    return run >= fence.length and not rest[run:].strip(" ")


def _without_html_comments(line: str) -> tuple[str, bool]:
    """The line with complete ``<!-- -->`` comments removed, cut at an unclosed one; and whether one is open."""
    visible: list[str] = []
    pos = 0
    while (start := line.find("<!--", pos)) >= 0:
        visible.append(line[pos:start])
        end = line.find("-->", start + 4)
        if end < 0:
            return "".join(visible), True
        pos = end + 3
    visible.append(line[pos:])
    return "".join(visible), False


def _html_comment_reopens(line: str) -> bool:
    """For a line that ends an open HTML comment: does another one open after the ``-->``?"""
    return _without_html_comments(line[line.find("-->") + 3 :])[1]


def command_lines(body: str) -> list[str]:
    """The lines a reader sees as ordinary text at the start of a line, stripped.

    Not: fenced code, indented code (4+ columns), quoted lines, HTML comments. Line endings may be
    ``\\n``, ``\\r\\n`` or ``\\r``; tabs count to the next multiple of four columns.
    """
    lines: list[str] = []
    fence: _Fence | None = None
    in_comment = False
    for raw in _LINE_BREAK.split(body):
        line = raw.expandtabs(4)
        if fence is not None:
            if _closes(fence, line):
                fence = None
            continue
        if in_comment:
            in_comment = "-->" not in line or _html_comment_reopens(line)
            continue
        fence = _fence_opener(line)
        if fence is not None:
            continue
        visible, in_comment = _without_html_comments(line)
        text = visible.lstrip(" ")
        if len(line) - len(line.lstrip(" ")) > 3 or text.startswith(">"):
            continue
        lines.append(text.strip())
    return lines


# -- the grammar --------------------------------------------------------------------------------------


def _is_command(line: str) -> bool:
    words = line.split(maxsplit=1)
    return bool(words) and words[0].lower() == PREFIX


def parse(body: str) -> list[Command]:
    """The command a comment holds: none, or exactly one (possibly :class:`Invalid`)."""
    found = [line for line in command_lines(body) if _is_command(line)]
    if len(found) > 1:
        return [
            Invalid(
                found[1],
                f"a comment gives the queue one command, and this one also has `{found[0]}`; "
                "post each command in its own comment",
            )
        ]
    return [parse_line(line) for line in found]


def parse_line(line: str) -> Command:
    """One command line (it starts with ``/merge``) → its command."""
    line = line.strip()
    words = line.split()
    if not words or words[0].lower() != PREFIX:
        return Invalid(line, "a command starts with `/merge`")
    if words[0] != PREFIX:
        return _lowercase(line, PREFIX)
    args = words[1:]
    if not args:
        return Queue()
    if args[0] == "freeze":
        return _freeze(line, args[1:])
    verb = _VERBS.get(args[0])
    if verb is not None:
        if len(args) > 1:
            return Invalid(line, f"`/merge {args[0]}` takes nothing after it")
        return verb
    if args[0].lower() in _VERBS or args[0].lower() == "freeze":
        return _lowercase(line, f"/merge {args[0].lower()}")
    return _queue(line, args)


def _freeze(line: str, words: Sequence[str]) -> Command:
    reason = " ".join(words)
    if not reason:
        return Invalid(line, "`/merge freeze` needs a reason after it: `/merge freeze <why>`")
    if len(reason) > REASON_LIMIT:
        return Invalid(line, f"a freeze's reason is at most {REASON_LIMIT} characters")
    return Freeze(reason)


def _queue(line: str, args: Sequence[str]) -> Command:
    """``p=N``, ``method=M``, ``single`` and ``after REF...``, in any order, each at most once."""
    given: dict[str, str] = {}  # option → the text that gave it
    after: tuple[DepRef, ...] = ()
    index = 0
    while index < len(args):
        word = args[index]
        index += 1
        if word == "after":  # the references run up to the next key=value option
            end = next(
                (i for i in range(index, len(args)) if "=" in args[i] or args[i] == "after" or args[i] in _FLAGS),
                len(args),
            )
            text, index = " ".join(args[index:end]), end
            if "after" in given:
                return Invalid(line, "`after` is given twice")
            given["after"] = text
            refs, bad = parse_refs(text)
            if bad or not refs:
                return Invalid(line, _bad_refs(bad))
            after = refs
            continue
        if word in _FLAGS:
            if word in given:
                return Invalid(line, f"`{word}` is given twice")
            given[word] = word
            continue
        key, sep, _ = word.partition("=")
        option = _OPTIONS.get(key) if sep else None
        if option is None:
            return _unknown(line, word)
        if option in given:
            return Invalid(line, f"the {option} is given twice (`{given[option]}`, `{word}`)")
        given[option] = word
    return _options(line, given, after)


def _options(line: str, given: dict[str, str], after: tuple[DepRef, ...]) -> Command:
    priority = 0
    if "priority" in given:
        value = given["priority"].partition("=")[2]
        if not _PRIORITY.fullmatch(value) or abs(int(value)) > PRIORITY_LIMIT:
            return Invalid(
                line, f"priority must be a whole number from -{PRIORITY_LIMIT} to {PRIORITY_LIMIT}, got `{value}`"
            )
        priority = int(value)
    method: MergeMethod | None = None
    if "method" in given:
        value = given["method"].partition("=")[2]
        if value.lower() in _METHODS and value not in _METHODS:
            return _lowercase(line, f"method={value.lower()}")
        if value not in _METHODS:
            return Invalid(line, f"method must be rebase, merge or squash, got `{value}`")
        method = MergeMethod(value)
    return Queue(priority=priority, method=method, after=after, single="single" in given)


def _unknown(line: str, word: str) -> Invalid:
    key, sep, _ = word.partition("=")
    if word in _VERBS or word == "freeze":
        return Invalid(line, f"`{word}` is a command of its own: `/merge {word}`")
    if word.lower() == "after" or word.lower() in _FLAGS or (sep and key.lower() in _OPTIONS):
        return _lowercase(line, word.lower())
    if sep:
        return Invalid(line, f"unknown option `{key}`; {_EXPECTED}")
    return Invalid(line, f"unknown word `{word}`; {_EXPECTED}")


def _lowercase(line: str, spelling: str) -> Invalid:
    return Invalid(line, f"commands are lowercase: write `{spelling}`")


# -- references ----------------------------------------------------------------------------------------


def parse_ref(text: str) -> DepRef | None:
    """``#12`` or ``owner/repo#12`` → the reference; anything else (``#0``, ``owner#1``, ``a/b/c#1``) → None."""
    found = _REF.fullmatch(text)
    if found is None:
        return None
    owner, repo, digits = found.groups()
    number = int(digits)
    if not 1 <= number <= NUMBER_LIMIT or owner in (".", "..") or repo in (".", ".."):
        return None
    return DepRef(owner, repo, number)


def parse_refs(text: str) -> tuple[tuple[DepRef, ...], tuple[str, ...]]:
    """References separated by spaces or commas → (the references, each once; the words that are not)."""
    words = [word for word in _REF_SEPARATOR.split(text) if word]
    parsed = [(word, parse_ref(word)) for word in words]
    return unique(ref for _, ref in parsed if ref is not None), tuple(word for word, ref in parsed if ref is None)


def _bad_refs(bad: Sequence[str]) -> str:
    if not bad:
        return "`after` needs at least one PR: `after #12` or `after owner/repo#12`"
    return f"`{bad[0]}` is not a PR reference: write #N for this repository or owner/repo#N"


def unique(refs: Iterable[DepRef]) -> tuple[DepRef, ...]:
    """The references in their first order, each once."""
    return tuple(dict.fromkeys(refs))


# -- policy ----------------------------------------------------------------------------------------------


def check_priority(priority: int, ceiling: int, is_admin: bool) -> str | None:
    """None when the author may set ``priority``; else why not.

    The ceiling limits how high a non-admin may raise a PR; 0 (a plain ``/merge``) and below are always
    allowed, and admins have no ceiling.
    """
    if is_admin or priority <= max(ceiling, 0):
        return None
    return f"only repository admins can set a priority above {ceiling}; `p={priority}` was asked"
