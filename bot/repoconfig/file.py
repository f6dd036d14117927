"""A repository's merge-bot file, pure: its text → the settings it overrides, per branch, or what is wrong.

The file is TOML. Its top-level keys are the per-repository settings (:class:`bot.config.RepoSettings`) by
their global names, and apply to every branch of the repository; ``[branch."PATTERN"]`` tables hold more of
them for the target branches whose name matches PATTERN, an ``fnmatch`` glob (``*`` also matches ``/``;
case-sensitive)::

    merge_method = "squash"
    batch_max = 2

    [branch."release/*"]
    batch_max = 1
    allowed_methods = ["merge"]
    merge_method = "merge"

One table applies to a branch, never several: a table named exactly like the branch wins, else the first
matching pattern in the file's order. Its keys go over the top-level ones, which go over the bot's own
settings. The file is validated as a whole when it is read: every key known and of the right type, and
every table's combination (bot settings + top level + table) consistent (``window`` ≤ ``max_parallel``,
``merge_method`` among ``allowed_methods``). A file with any problem is not used at all; each problem names
its line (TOML's own errors carry one; a bad value is found at its key's line).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from bot.config import RepoSettings, Settings, masked

# Looked for in this order at the tip of the target branch; the first one there is the file.
PATHS = (".gitea/merge-bot.toml", ".forgejo/merge-bot.toml", ".merge-bot.toml")
BRANCH_TABLE = "branch"
KEYS = tuple(RepoSettings.model_fields)
_GLOBAL_ONLY = frozenset(Settings.model_fields) - frozenset(KEYS)
_TOML_AT = re.compile(r"\s*\(at line (?P<line>\d+), column \d+\)\s*$")
_SIMPLE_KEY = re.compile(r"""^\s*(?P<q>["']?)(?P<key>[A-Za-z0-9_-]+)(?P=q)\s*=""")
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with the file, at ``line`` (1-based; None when no line can be named)."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class RepoFile:
    """A valid file: the values it sets for every branch, and its branch tables in the file's order, each
    with the values it sets on top of those. Values are validated (tuples, literals), ready to override."""

    path: str
    values: Mapping[str, Any] = field(default_factory=dict)
    branches: tuple[tuple[str, Mapping[str, Any]], ...] = ()

    def table_for(self, branch: str) -> str | None:
        """The pattern of the table that applies to ``branch``: its exact name, else the first glob matching it."""
        patterns = [pattern for pattern, _ in self.branches]
        if branch in patterns:
            return branch
        return next((p for p in patterns if _GLOB_CHARS & set(p) and fnmatch.fnmatchcase(branch, p)), None)

    def overrides(self, branch: str) -> dict[str, Any]:
        """What the file sets for ``branch``: the top level, and the one table that applies over it."""
        pattern = self.table_for(branch)
        table = dict(self.branches)[pattern] if pattern is not None else {}
        return {**self.values, **table}


def effective_settings(settings: Settings, repo_file: RepoFile | None, branch: str) -> Settings:
    """The settings ``branch`` of a repository is worked with: ``settings`` with what its file sets for it.

    The file was validated on top of these very settings (:func:`parse`), so a copy with its values is
    consistent without validating again."""
    if repo_file is None:
        return settings
    overrides = dict(repo_file.overrides(branch))
    if "notify_urls" in overrides:  # a repository's own targets come on top of the bot's, never instead of them
        mine = {url.get_secret_value() for url in settings.notify_urls}
        extra = tuple(url for url in overrides["notify_urls"] if url.get_secret_value() not in mine)
        overrides["notify_urls"] = (*settings.notify_urls, *extra)
    return settings.model_copy(update=overrides) if overrides else settings


def parse(text: str | bytes, path: str, base: RepoSettings) -> RepoFile | tuple[Problem, ...]:
    """The file ``path`` with ``text``, validated on top of ``base`` (the bot's settings, or the defaults);
    or its problems, in the order of their lines."""
    parsed = _parse(text, path, base)
    return _in_order(parsed) if isinstance(parsed, tuple) else parsed


def _parse(text: str | bytes, path: str, base: RepoSettings) -> RepoFile | tuple[Problem, ...]:
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return (Problem(path, raw[: exc.start].count(b"\n") + 1, "the file is not UTF-8 text"),)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_AT.search(message)
        line = int(found["line"]) if found else None
        return (Problem(path, line, f"not valid TOML: {_TOML_AT.sub('', message)}"),)
    locate = _Locator(text)
    tables = data.pop(BRANCH_TABLE, {})
    problems = _unknown(path, data, (), locate)
    if not isinstance(tables, dict) or not all(isinstance(table, dict) for table in tables.values()):
        problems.append(Problem(path, locate.line((), BRANCH_TABLE), 'branch holds tables, e.g. [branch."release/*"]'))
        tables = {}
    for pattern, table in tables.items():
        problems.extend(_unknown(path, table, (BRANCH_TABLE, pattern), locate))
    if problems:
        return tuple(problems)
    base_values = base.repo_values()
    top = _validate(path, base_values, data, {}, (), locate)
    if isinstance(top, tuple):
        return top
    branches: list[tuple[str, Mapping[str, Any]]] = []
    for pattern, table in tables.items():
        checked = _validate(path, {**base_values, **data}, table, data, (BRANCH_TABLE, pattern), locate)
        if isinstance(checked, tuple):
            problems.extend(checked)
        else:
            branches.append((pattern, checked))
    if problems:
        return tuple(problems)
    return RepoFile(path, top, tuple(branches))


def _in_order(problems: tuple[Problem, ...]) -> tuple[Problem, ...]:
    return tuple(sorted(problems, key=lambda problem: problem.line or 0))


def describe(repo_file: RepoFile, base: RepoSettings) -> dict[str, Any]:
    """What the file sets, for people: the top level and each table, secrets masked."""
    shown: dict[str, Any] = {}
    full = masked(base.model_copy(update=dict(repo_file.values)))
    shown.update({key: full[key] for key in repo_file.values})
    for pattern, table in repo_file.branches:
        values = masked(base.model_copy(update={**repo_file.values, **table}))
        shown[f'branch."{pattern}"'] = {key: values[key] for key in table}
    return shown


def _unknown(path: str, values: Mapping[str, Any], table: tuple[str, ...], locate: _Locator) -> list[Problem]:
    problems = []
    for key in values:
        if key in KEYS:
            continue
        if key in _GLOBAL_ONLY:
            hint = f"{key} is one of the bot's own settings, not a repository's"
        elif key == BRANCH_TABLE:
            hint = "branch tables do not nest"
        else:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"did you mean {close[0]}?" if close else "see config/merge-bot.repo.example.toml"
        problems.append(Problem(path, locate.line(table, key), f"unknown key {key!r} ({hint})"))
    return problems


def _validate(
    path: str,
    under: Mapping[str, Any],
    values: Mapping[str, Any],
    outer: Mapping[str, Any],
    table: tuple[str, ...],
    locate: _Locator,
) -> dict[str, Any] | tuple[Problem, ...]:
    """``values`` (one table of the file) validated on top of ``under``; the validated values, or the problems.
    A problem with a key of ``outer`` (the top level, under a branch table) is placed at that key's line."""
    try:
        model = RepoSettings.model_validate({**under, **values})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = error["loc"]
            message = error["msg"].removeprefix("Value error, ")
            if loc:
                key = str(loc[0])
                where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:])
                line = locate.line(table, key) if key in values else locate.line((), key)
                problems.append(Problem(path, line, f"{key}{where}: {message}"))
            else:
                mentioned = [key for key in values if re.search(rf"\b{re.escape(key)}\b", message)]
                mentioned += [key for key in outer if re.search(rf"\b{re.escape(key)}\b", message)]
                line = None
                if mentioned:
                    key = mentioned[0]
                    line = locate.line(table, key) if key in values else locate.line((), key)
                problems.append(Problem(path, line or locate.line(table, None), message))
        return tuple(problems)
    return {key: getattr(model, key) for key in values}


class _Locator:
    """Finds the line of a key in a table of the file (or of the table's header, for ``key=None``)."""

    def __init__(self, text: str) -> None:
        self.found: dict[tuple[str, ...], int] = {}
        current: tuple[str, ...] = ()
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                header = _key_path(line)
                if header is not None:
                    current = header
                    self.found.setdefault(current, number)
                continue
            key = _key_path(line)
            if key is not None:
                full = current + key
                for end in range(len(current) + 1, len(full) + 1):
                    self.found.setdefault(full[:end], number)

    def line(self, table: tuple[str, ...], key: str | None) -> int | None:
        wanted = table if key is None else (*table, key)
        return self.found.get(wanted)


def _key_path(line: str) -> tuple[str, ...] | None:
    """The dotted key a line sets (or the table a header line opens): ``a.b = 1`` → ("a", "b")."""
    try:
        data: Any = tomllib.loads(line)
    except tomllib.TOMLDecodeError:
        simple = _SIMPLE_KEY.match(line)  # the first line of a value that runs over several lines
        return (simple["key"],) if simple else None
    path: list[str] = []
    while isinstance(data, dict) and len(data) == 1:
        key, data = next(iter(data.items()))
        path.append(key)
    return tuple(path) or None
