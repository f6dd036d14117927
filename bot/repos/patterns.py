"""What ``MERGE_BOT_REPOS`` may name: a repository, every repository of an owner, or every repository with a
topic. Parsing and matching are pure; :mod:`bot.repos.discovery` asks the forge which repositories match.

- ``owner/name``: that repository, always managed (an operator named it).
- ``owner/*``: every repository of that user or organisation that the bot's user administers.
- ``topic:NAME``: every repository carrying that topic that the bot's user administers. Gitea stores topics in
  lower case and matches ``GET /repos/search?topic=true&q=NAME`` exactly (``models/repo/repo_list.go``,
  ``SearchRepositoryCondition``: ``topic.name = lower(keyword)``), and a topic is ``^[a-z0-9][-.a-z0-9]*$`` of
  at most 35 characters (``models/repo/topic.go``, ``ValidateTopic``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

NAME = r"[A-Za-z0-9_.-]+"
EXACT_RE = re.compile(rf"^(?P<owner>{NAME})/(?P<name>{NAME})$")
OWNER_RE = re.compile(rf"^(?P<owner>{NAME})/\*$")
TOPIC_RE = re.compile(r"^[a-z0-9][-.a-z0-9]*$")
TOPIC_MAX = 35
TOPIC_PREFIX = "topic:"


class PatternError(ValueError):
    """A pattern that names nothing: the message says what would."""


@dataclass(frozen=True, slots=True)
class Exact:
    owner: str
    name: str

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True, slots=True)
class Owner:
    owner: str

    def __str__(self) -> str:
        return f"{self.owner}/*"


@dataclass(frozen=True, slots=True)
class Topic:
    topic: str

    def __str__(self) -> str:
        return f"{TOPIC_PREFIX}{self.topic}"


Pattern = Exact | Owner | Topic


def parse(text: str) -> Pattern:
    value = text.strip()
    if value.startswith(TOPIC_PREFIX):
        topic = value[len(TOPIC_PREFIX) :]
        if not topic:
            raise PatternError(f"{text!r} names no topic: write topic:NAME")
        if topic != topic.lower() and TOPIC_RE.match(topic.lower()):
            raise PatternError(f"{text!r}: Gitea's topics are lower case, write topic:{topic.lower()}")
        if len(topic) > TOPIC_MAX or not TOPIC_RE.match(topic):
            raise PatternError(
                f"{text!r} is not a Gitea topic (lower-case letters, digits, '-' and '.', not first, "
                f"at most {TOPIC_MAX} characters)"
            )
        return Topic(topic)
    if match := EXACT_RE.match(value):
        return Exact(match["owner"], match["name"])
    if match := OWNER_RE.match(value):
        return Owner(match["owner"])
    if "*" in value:
        raise PatternError(f"{text!r}: a wildcard stands only for a whole repository name, as in owner/*")
    raise PatternError(f"expected owner/name, owner/* or topic:NAME, got {text!r}")


def parse_all(texts: Iterable[str]) -> tuple[Pattern, ...]:
    """Each pattern once, in the order given (case-insensitively for names)."""
    seen: dict[str, Pattern] = {}
    for text in texts:
        pattern = parse(text)
        seen.setdefault(str(pattern).lower(), pattern)
    return tuple(seen.values())


def exact_names(patterns: Iterable[Pattern]) -> tuple[str, ...]:
    return tuple(str(p) for p in patterns if isinstance(p, Exact))


def discovers(patterns: Iterable[Pattern]) -> bool:
    """Whether any pattern asks the forge (rather than naming a repository)."""
    return any(not isinstance(p, Exact) for p in patterns)


def owner_of(full_name: str) -> str:
    return full_name.split("/", 1)[0]


def matches(pattern: Pattern, full_name: str, topics: Iterable[str] = ()) -> bool:
    owner, _, name = full_name.partition("/")
    if isinstance(pattern, Exact):
        return (pattern.owner.lower(), pattern.name.lower()) == (owner.lower(), name.lower())
    if isinstance(pattern, Owner):
        return pattern.owner.lower() == owner.lower()
    return pattern.topic in {t.lower() for t in topics}
