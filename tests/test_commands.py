"""The comment grammar (bot/queue/commands.py), case by case. Pure: a comment body in, its command out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.queue.commands import (
    Cancel,
    Command,
    DepRef,
    Freeze,
    Invalid,
    Queue,
    Retry,
    StatusQuery,
    Unfreeze,
    check_priority,
    command_lines,
    parse,
    parse_line,
    parse_ref,
)
from bot.queue.model import MergeMethod
from tests.conftest import PAYLOADS


@dataclass(frozen=True)
class Refused:
    """An :class:`Invalid` answer for ``line`` whose reason says ``because``."""

    line: str
    because: str


Expected = Command | Refused


def here(number: int) -> DepRef:
    return DepRef(None, None, number)


FENCE = "```"

CASES: list[tuple[str, str, list[Expected]]] = [
    # -- the forms
    ("no command", "LGTM, thanks!", []),
    ("empty comment", "", []),
    ("bare /merge queues at the head", "/merge", [Queue()]),
    ("cancel", "/merge cancel", [Cancel()]),
    ("retry", "/merge retry", [Retry()]),
    ("status", "/merge status", [StatusQuery()]),
    ("freeze with a reason", "/merge freeze release 4.2, see #12", [Freeze("release 4.2, see #12")]),
    ("freeze: whitespace runs read as one space", "/merge freeze   CI\tmigration  ", [Freeze("CI migration")]),
    ("freeze: p=1 in a reason is words", "/merge freeze p=1 after #3", [Freeze("p=1 after #3")]),
    ("freeze needs a reason", "/merge freeze", [Refused("/merge freeze", "needs a reason")]),
    ("freeze: a reason too long", "/merge freeze " + "x" * 501, [Refused("/merge freeze " + "x" * 501, "at most 500")]),
    ("freeze is lowercase", "/merge Freeze now", [Refused("/merge Freeze now", "write `/merge freeze`")]),
    ("freeze: a comment after it is dropped", "/merge freeze release <!-- note -->", [Freeze("release")]),
    ("unfreeze", "/merge unfreeze", [Unfreeze()]),
    ("unfreeze takes nothing", "/merge unfreeze now", [Refused("/merge unfreeze now", "takes nothing after it")]),
    ("unfreeze is lowercase", "/merge UNFREEZE", [Refused("/merge UNFREEZE", "write `/merge unfreeze`")]),
    ("freeze is not an option", "/merge p=1 freeze", [Refused("/merge p=1 freeze", "a command of its own")]),
    ("a quoted freeze is not a command", "> /merge freeze no", []),
    ("priority", "/merge p=2", [Queue(priority=2)]),
    ("priority, long spelling", "/merge priority=3", [Queue(priority=3)]),
    ("method", "/merge method=squash", [Queue(method=MergeMethod.SQUASH)]),
    ("after one PR of this repository", "/merge after #12", [Queue(after=(here(12),))]),
    (
        "after PRs here and in another repository",
        "/merge after #12 other/repo#5",
        [Queue(after=(here(12), DepRef("other", "repo", 5)))],
    ),
    (
        "every option, in any order",
        "/merge p=2 method=squash after #3",
        [Queue(priority=2, method=MergeMethod.SQUASH, after=(here(3),))],
    ),
    (
        "after runs up to the next option",
        "/merge after #3 #4 p=1",
        [Queue(priority=1, after=(here(3), here(4)))],
    ),
    (
        "references separated by commas",
        "/merge after #3,#4, other/repo#5",
        [Queue(after=(here(3), here(4), DepRef("other", "repo", 5)))],
    ),
    ("a repeated reference counts once", "/merge after #3 #3", [Queue(after=(here(3),))]),
    ("single: tested alone", "/merge single", [Queue(single=True)]),
    (
        "single among the options, after ends before it",
        "/merge p=2 after #3 single method=merge",
        [Queue(priority=2, method=MergeMethod.MERGE, after=(here(3),), single=True)],
    ),
    (
        "owner and repository compare without case",
        "/merge after Org/Repo#3",
        [Queue(after=(DepRef("org", "repo", 3),))],
    ),
    (
        "repository names with dots, dashes, underscores",
        "/merge after a.b/c-d_e#7",
        [Queue(after=(DepRef("a.b", "c-d_e", 7),))],
    ),
    # -- where a command may stand
    ("up to three spaces before it", "   /merge", [Queue()]),
    ("trailing spaces", "/merge p=1   ", [Queue(priority=1)]),
    ("tabs between words", "/merge\tp=1\tmethod=merge", [Queue(priority=1, method=MergeMethod.MERGE)]),
    ("a no-break space between words", "/merge\u00a0p=2", [Queue(priority=2)]),
    ("after other text, on its own line", "Looks good.\n/merge", [Queue()]),
    ("four spaces: indented code", "Example:\n\n    /merge", []),
    ("a tab: indented code", "\t/merge", []),
    ("spaces then a tab reach column four", "  \t/merge", []),
    ("list continuation aligned under the text (3 spaces) is a command", "1. fixed the tests\n   /merge", [Queue()]),
    ("list continuation indented 4 spaces is not (it may be code)", "- item\n\n    /merge", []),
    ("a list item is not the start of a line", "- /merge", []),
    ("a heading is not", "# /merge", []),
    ("mid-line is not", "please /merge this", []),
    ("/merged is not the command", "/merged", []),
    ("/merge-queue is not the command", "/merge-queue", []),
    ("punctuation after it is not the command", "/merge.", []),
    ("inline code at the start of the line", "`/merge` queues a PR", []),
    ("inline code alone", "`/merge`", []),
    # -- quotes
    ("quoted", "> /merge", []),
    ("quoted without a space", ">/merge", []),
    ("nested quote", ">> /merge", []),
    ("nested quote with spaces", "> > /merge", []),
    ("indented quote", "   > /merge", []),
    ("the author's line right after a quote", "> can this go in?\n/merge", [Queue()]),
    ("a quote reply with its own command below", "> /merge p=9\n\n/merge", [Queue()]),
    # -- fenced and HTML-commented code
    ("backtick fence", f"{FENCE}\n/merge\n{FENCE}", []),
    ("tilde fence", "~~~\n/merge\n~~~", []),
    ("fence with an info string", f"{FENCE}sh\n/merge\n{FENCE}", []),
    ("fence with a spaced info string", f"{FENCE} console\n$ echo hi\n/merge\n{FENCE}", []),
    ("unterminated fence runs to the end", f"{FENCE}\n/merge", []),
    ("after a closed fence", f"{FENCE}\ncode\n{FENCE}\n/merge", [Queue()]),
    ("a fence with an info string does not close a fence", f"{FENCE}\n{FENCE}sh\n/merge\n{FENCE}", []),
    ("a shorter fence does not close a longer one", "````\n```\n/merge\n````", []),
    ("a longer fence closes a shorter one", f"{FENCE}\ncode\n````\n/merge", [Queue()]),
    ("backticks do not close tildes", "~~~\n```\n/merge\n~~~", []),
    ("a fence indented three spaces is a fence", f"   {FENCE}\n/merge\n   {FENCE}", []),
    ("a fence-like line indented four spaces is code, not a fence", f"text\n\n    {FENCE}\n/merge", [Queue()]),
    ("a closer indented four spaces does not close", f"{FENCE}\n    {FENCE}\n/merge\n{FENCE}", []),
    ("a fence that opens a list item", f"- {FENCE}sh\n  /merge\n  {FENCE}", []),
    ("a fence in a numbered list item", f"1. {FENCE}\n   /merge\n   {FENCE}\n\n/merge status", [StatusQuery()]),
    ("``` with backticks after it is inline code, not a fence", "```inline```\n/merge", [Queue()]),
    ("a tilde fence may have backticks in its info", "~~~ `x`\n/merge\n~~~", []),
    ("HTML comment on the line", "<!-- /merge -->", []),
    ("HTML comment over lines", "<!--\n/merge\n-->", []),
    ("unterminated HTML comment hides the rest", "<!-- note\n/merge", []),
    ("after an HTML comment", "<!-- template -->\n/merge", [Queue()]),
    ("an HTML comment after the command is not seen", "/merge <!-- from the release checklist -->", [Queue()]),
    ("an HTML comment opened mid-line", "thanks <!-- hidden\n/merge\n-->", []),
    ("a second HTML comment opened where one closes", "<!--\nx --> <!--\n/merge\n-->\n/merge retry", [Retry()]),
    # -- line endings
    ("CRLF", "Thanks!\r\n/merge p=1\r\n", [Queue(priority=1)]),
    ("CR alone", "Thanks!\r/merge p=1", [Queue(priority=1)]),
    ("CRLF fence", f"{FENCE}\r\n/merge\r\n{FENCE}\r\n/merge status", [StatusQuery()]),
    ("a Unicode line separator is not a line break", "thanks\u2028/merge", []),
    # -- case: the grammar is lowercase, and says so
    ("/MERGE", "/MERGE", [Refused("/MERGE", "lowercase: write `/merge`")]),
    ("/Merge with options", "/Merge p=1", [Refused("/Merge p=1", "lowercase: write `/merge`")]),
    ("verb in capitals", "/merge CANCEL", [Refused("/merge CANCEL", "lowercase: write `/merge cancel`")]),
    ("option key in capitals", "/merge P=2", [Refused("/merge P=2", "lowercase: write `p=2`")]),
    ("method in capitals", "/merge method=Squash", [Refused("/merge method=Squash", "write `method=squash`")]),
    ("after in capitals", "/merge AFTER #3", [Refused("/merge AFTER #3", "write `after`")]),
    # -- one command per comment
    (
        "two commands: neither acts",
        "/merge\n/merge status",
        [Refused("/merge status", "one command, and this one also has `/merge`")],
    ),
    ("the same command twice: neither acts", "/merge\n\n/merge", [Refused("/merge", "one command")]),
    ("one command and one in code", f"/merge\n{FENCE}\n/merge cancel\n{FENCE}", [Queue()]),
    # -- the whole line must parse
    ("trailing words", "/merge please", [Refused("/merge please", "unknown word `please`")]),
    ("trailing words after a verb", "/merge cancel now", [Refused("/merge cancel now", "takes nothing after it")]),
    ("a verb among options", "/merge p=1 retry", [Refused("/merge p=1 retry", "a command of its own")]),
    ("unknown option", "/merge prio=2", [Refused("/merge prio=2", "unknown option `prio`")]),
    ("priority twice", "/merge p=1 p=2", [Refused("/merge p=1 p=2", "priority is given twice")]),
    ("priority twice, two spellings", "/merge p=1 priority=1", [Refused("/merge p=1 priority=1", "given twice")]),
    ("method twice", "/merge method=merge method=squash", [Refused("/merge method=merge method=squash", "twice")]),
    ("after twice", "/merge after #1 after #2", [Refused("/merge after #1 after #2", "`after` is given twice")]),
    ("single twice", "/merge single single", [Refused("/merge single single", "`single` is given twice")]),
    ("single in capitals", "/merge Single", [Refused("/merge Single", "write `single`")]),
    ("single with a value", "/merge single=yes", [Refused("/merge single=yes", "unknown option `single`")]),
    ("negative priority (after everything else)", "/merge p=-5", [Queue(priority=-5)]),
    ("the highest priority", "/merge p=1000000", [Queue(priority=1_000_000)]),
    ("the lowest priority", "/merge p=-1000000", [Queue(priority=-1_000_000)]),
    ("priority above the limit", "/merge p=1000001", [Refused("/merge p=1000001", "from -1000000 to 1000000")]),
    ("huge priority", "/merge p=99999999999999999999", [Refused("/merge p=99999999999999999999", "whole number")]),
    ("priority with a plus", "/merge p=+1", [Refused("/merge p=+1", "whole number")]),
    ("fractional priority", "/merge p=1.5", [Refused("/merge p=1.5", "whole number")]),
    ("empty priority", "/merge p=", [Refused("/merge p=", "whole number")]),
    ("non-ASCII digits", "/merge p=\u0663", [Refused("/merge p=\u0663", "whole number")]),
    (
        "unknown method",
        "/merge method=fast-forward",
        [Refused("/merge method=fast-forward", "rebase, merge or squash")],
    ),
    ("empty method", "/merge method=", [Refused("/merge method=", "rebase, merge or squash")]),
    ("after without references", "/merge after", [Refused("/merge after", "needs at least one PR")]),
    ("after followed by an option", "/merge after p=1", [Refused("/merge after p=1", "needs at least one PR")]),
    ("a bare #", "/merge after #", [Refused("/merge after #", "`#` is not a PR reference")]),
    ("#0", "/merge after #0", [Refused("/merge after #0", "`#0` is not a PR reference")]),
    ("#-1", "/merge after #-1", [Refused("/merge after #-1", "`#-1` is not")]),
    ("a number with letters", "/merge after #1a", [Refused("/merge after #1a", "`#1a` is not")]),
    ("owner without repository", "/merge after owner#1", [Refused("/merge after owner#1", "`owner#1` is not")]),
    ("three path parts", "/merge after a/b/c#1", [Refused("/merge after a/b/c#1", "`a/b/c#1` is not")]),
    ("a dot for a name", "/merge after ../x#1", [Refused("/merge after ../x#1", "`../x#1` is not")]),
    ("a PR number out of range", "/merge after #99999999999", [Refused("/merge after #99999999999", "is not")]),
    (
        "a URL is not a reference",
        "/merge after https://git.example/o/r/pulls/1",
        [Refused("/merge after https://git.example/o/r/pulls/1", "is not a PR reference")],
    ),
    ("prose after the references", "/merge after #3 please", [Refused("/merge after #3 please", "`please` is not")]),
]


def matches(found: Command, expected: Expected) -> bool:
    if isinstance(expected, Refused):
        return isinstance(found, Invalid) and found.line == expected.line and expected.because in found.reason
    return found == expected


@pytest.mark.parametrize(("name", "body", "expected"), CASES, ids=[case[0] for case in CASES])
def test_grammar(name: str, body: str, expected: list[Expected]) -> None:
    found = parse(body)
    assert len(found) == len(expected), found
    assert all(matches(f, e) for f, e in zip(found, expected, strict=True)), found


# -- real comments (tests/contract/gitea/payloads): none holds a command; a command added below one does


def comment_payloads() -> list[Path]:
    return sorted(PAYLOADS.glob("*issue_comment*.json"))


def comment_body(path: Path) -> str:
    body = json.loads(path.read_text())["comment"]["body"]
    assert isinstance(body, str)
    return body


def test_the_comment_samples_are_there() -> None:
    assert len(comment_payloads()) >= 4


@pytest.mark.parametrize("path", comment_payloads(), ids=lambda path: path.name)
def test_real_comment_holds_no_command(path: Path) -> None:
    assert parse(comment_body(path)) == []


@pytest.mark.parametrize("path", comment_payloads(), ids=lambda path: path.name)
def test_real_comment_quoted_then_answered(path: Path) -> None:
    quoted = "\r\n".join(f"> {line}" for line in comment_body(path).splitlines())
    assert parse(f"{quoted}\r\n> /merge\r\n\r\n/merge p=1 after #2") == [Queue(priority=1, after=(here(2),))]


# -- properties


@given(st.text())
def test_any_text_gives_at_most_one_command_and_never_raises(body: str) -> None:
    assert len(parse(body)) <= 1


@given(st.lists(st.text(alphabet=st.characters(exclude_characters="\r\n")), max_size=8))
def test_a_fully_quoted_comment_never_commands(lines: list[str]) -> None:
    assert parse("\n".join(f"> {line}" for line in [*lines, "/merge"])) == []


@given(st.lists(st.text(alphabet=st.characters(exclude_characters="\r\n")), max_size=8))
def test_line_endings_do_not_matter(lines: list[str]) -> None:
    assert parse("\r\n".join(lines)) == parse("\n".join(lines)) == parse("\r".join(lines))


reasons = st.text(alphabet=st.characters(exclude_characters="\r\n<", exclude_categories=("Cs",)), max_size=600)


@given(reasons)
def test_freeze_takes_the_rest_of_the_line_as_its_reason(reason: str) -> None:
    """Whatever follows ``/merge freeze`` on its line is the reason, its whitespace runs read as one space;
    a blank or too long one is refused, never taken for something else."""
    (found,) = parse(f"/merge freeze {reason}")
    words = " ".join(reason.split())
    if not words:
        assert isinstance(found, Invalid) and "needs a reason" in found.reason
    elif len(words) > 500:
        assert isinstance(found, Invalid) and "at most 500" in found.reason
    else:
        assert found == Freeze(words)


@given(reasons, st.sampled_from(["Freeze", "FREEZE", "fReeze"]))
def test_freeze_in_another_case_is_never_obeyed(reason: str, spelling: str) -> None:
    (found,) = parse(f"/merge {spelling} {reason}")
    assert isinstance(found, Invalid) and "write `/merge freeze`" in found.reason


# -- the smaller pieces


def test_command_lines_are_what_a_reader_sees_at_line_starts() -> None:
    body = f"Hi\r\n> quoted\r\n{FENCE}\r\ncode\r\n{FENCE}\r\n    indented\r\n  two <!-- c --> words  \r\n"
    assert command_lines(body) == ["Hi", "two  words", ""]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/merge", Queue()),
        ("  /merge status  ", StatusQuery()),
        ("/merge-queue", Invalid("/merge-queue", "a command starts with `/merge`")),
        ("", Invalid("", "a command starts with `/merge`")),
    ],
)
def test_parse_line(line: str, expected: Command) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#5", DepRef(None, None, 5)),
        ("Owner/Repo#5", DepRef("owner", "repo", 5)),
        ("#0", None),
        ("#", None),
        ("owner#1", None),
        ("a/b/c#1", None),
        ("o/r#2147483648", None),
        (" #5", None),
    ],
)
def test_parse_ref(text: str, expected: DepRef | None) -> None:
    assert parse_ref(text) == expected


def test_dep_ref_resolve_and_relative() -> None:
    short = DepRef(None, None, 5)
    full = short.resolve("Owner", "Repo")
    assert full == DepRef("owner", "repo", 5) and str(full) == "owner/repo#5"
    assert full.resolve("other", "place") == full
    assert full.relative_to("OWNER", "repo") == short and str(short) == "#5"
    assert full.relative_to("other", "repo") == full


@pytest.mark.parametrize("fields", [("owner", None, 1), (None, "repo", 1), (None, None, 0), ("o", "r", 2**31)])
def test_dep_ref_rejects_impossible_references(fields: tuple[str | None, str | None, int]) -> None:
    with pytest.raises(ValueError):
        DepRef(*fields)


@pytest.mark.parametrize(
    ("priority", "ceiling", "is_admin", "allowed"),
    [
        (0, 5, False, True),
        (5, 5, False, True),
        (6, 5, False, False),
        (6, 5, True, True),
        (1_000_000, 0, True, True),
        (-3, 0, False, True),
        (0, -1, False, True),  # a plain /merge is never refused for its priority
        (1, 0, False, False),
    ],
)
def test_check_priority(priority: int, ceiling: int, is_admin: bool, allowed: bool) -> None:
    reason = check_priority(priority, ceiling, is_admin)
    assert (reason is None) is allowed
    if reason is not None:
        assert f"above {ceiling}" in reason and f"p={priority}" in reason
