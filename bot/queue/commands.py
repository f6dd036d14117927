"""The comment grammar, pure: a comment body → the commands it holds.

A command is a line that starts with ``/merge`` — outside fenced code blocks, indented code and quotes.
``/merge`` alone queues the PR at its current head; ``/merge cancel``, ``/merge retry`` and
``/merge status`` do what they say. Options after ``/merge``: ``p=N`` (priority) and
``method=rebase|merge|squash``. A malformed command is returned as :class:`Invalid` with the reason, so
the bot can answer it instead of silently ignoring it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.queue.model import MergeMethod

PREFIX = "/merge"
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
PRIORITY_LIMIT = 1_000_000


@dataclass(frozen=True, slots=True)
class Queue:
    priority: int = 0
    method: MergeMethod | None = None


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
class Invalid:
    line: str
    reason: str


Command = Queue | Cancel | Retry | StatusQuery | Invalid


def command_lines(body: str) -> list[str]:
    """Lines that may hold a command: not in a fenced block, not indented code, not quoted."""
    lines: list[str] = []
    fence: str | None = None
    for raw in body.replace("\r\n", "\n").split("\n"):
        opener = FENCE.match(raw)
        if fence is not None:
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence):
                fence = None
            continue
        if opener:
            fence = opener.group(1)
            continue
        if raw.startswith(("    ", "\t")):
            continue
        line = raw.strip()
        if line.startswith(">"):
            continue
        lines.append(line)
    return lines


def parse(body: str) -> list[Command]:
    found: list[Command] = []
    for line in command_lines(body):
        if line == PREFIX or line.startswith(PREFIX + " ") or line.startswith(PREFIX + "\t"):
            found.append(parse_line(line))
    return found


def parse_line(line: str) -> Command:
    words = line.split()[1:]
    if not words:
        return Queue()
    verb = words[0].lower()
    if verb in ("cancel", "retry", "status"):
        if len(words) > 1:
            return Invalid(line, f"`/merge {verb}` takes no arguments")
        verbs: dict[str, Command] = {"cancel": Cancel(), "retry": Retry(), "status": StatusQuery()}
        return verbs[verb]
    priority = 0
    method: MergeMethod | None = None
    for word in words:
        key, sep, value = word.partition("=")
        key = key.lower()
        if not sep:
            return Invalid(line, f"unknown word `{word}`; expected p=N, method=rebase|merge|squash, cancel, retry")
        if key in ("p", "priority"):
            if not re.fullmatch(r"-?\d{1,7}", value) or abs(int(value)) > PRIORITY_LIMIT:
                return Invalid(line, f"priority must be a whole number, got `{value}`")
            priority = int(value)
        elif key == "method":
            try:
                method = MergeMethod(value.lower())
            except ValueError:
                return Invalid(line, f"method must be rebase, merge or squash, got `{value}`")
        else:
            return Invalid(line, f"unknown option `{key}`")
    return Queue(priority=priority, method=method)
