"""Which settings a repository's branch is worked with: its merge-bot file at the branch's tip, read from
the bot's git mirror, cached per (repository, tip).

- The file is the first of :data:`~bot.repoconfig.file.PATHS` at the tip, read with ``git cat-file`` on the
  mirror (fetched into ``refs/merge-bot/config/<branch>`` when the mirror does not have the tip yet).
- A bad file never stops the queue: the last good file of the branch's history stays in force (the newest
  commit that changed the file and left a valid one; none: the bot's own settings), the commit that brought
  the bad file gets a failing ``<status_context>/config`` status naming the line and the problem, and the
  train records it for the queue page (``trains.config_problem``).
- The tip of a branch is the forge's: the gate reads it every pass; commands use the last tip seen for a few
  seconds (a push moves it at once, :meth:`RepoConfigs.moved`).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.config import Settings
from bot.db.models import Repository, Train
from bot.forge import errors
from bot.forge.client import GiteaClient
from bot.git.mirror import Mirror, MirrorCache
from bot.logs import get_logger
from bot.notifications import enqueue, targets, text
from bot.queue.messages import STATUS_LIMIT
from bot.repoconfig.file import PATHS, Problem, RepoFile, effective_settings, parse

log = get_logger(__name__)
HISTORY = 20  # commits of a branch's file history searched for the last good file
CACHED = 512  # (repository, tip) pairs kept
TIP_SECONDS = 10.0  # how long a command trusts the last tip seen of a branch


@dataclass(frozen=True)
class Resolved:
    """The file in force at a tip: ``file`` (None: none, the bot's settings) from commit ``source``; when the
    tip's own file is bad, ``problem`` says what is wrong and ``offending`` is the commit that brought it."""

    tip: str
    file: RepoFile | None = None
    source: str | None = None
    problem: Problem | None = None
    offending: str | None = None

    def note(self) -> str | None:
        """The problem in one line for the queue page, or None when the tip's file is fine."""
        if self.problem is None:
            return None
        kept = f"the file of {self.source[:10]} stays" if self.source else "the bot's own settings stay"
        return f"{self.problem} (brought by {(self.offending or self.tip)[:10]}; {kept} in force)"


class RepoConfigs:
    """The cache of repository files, and the settings each branch is worked with."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        forge: GiteaClient,
        mirrors: MirrorCache,
        clock: Clock,
        *,
        tip_seconds: float = TIP_SECONDS,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.forge = forge
        self.mirrors = mirrors
        self.clock = clock
        self._tip_ttl = timedelta(seconds=tip_seconds)
        self._resolved: OrderedDict[tuple[str, str], Resolved] = OrderedDict()
        self._tips: dict[tuple[str, str], tuple[datetime, str]] = {}
        self._told: set[tuple[str, str]] = set()  # (repository, commit) given the failing status

    # -- who asks -----------------------------------------------------------------------------------

    async def for_train(self, train: Train, repo: Repository) -> Settings:
        """The settings of a train's pass: its branch's file at the tip the forge shows now. A change of the
        file's problem is recorded on the train (``train`` is updated too)."""
        tip = await self.forge.branch_sha(repo.owner, repo.name, train.branch)
        self._tips[_key(repo.owner, repo.name, train.branch)] = (self.clock.now(), tip)
        resolved = await self.resolve(repo.owner, repo.name, train.branch, tip)
        note = resolved.note()
        settings = effective_settings(self.settings, resolved.file, train.branch)
        if note != train.config_problem:
            async with self.sessions.begin() as session:
                await session.execute(update(Train).where(Train.id == train.id).values(config_problem=note))
                if note:  # told once per problem (the key), to the targets of the rules still in force
                    repository = f"{repo.owner}/{repo.name}"
                    told = text.config_broken(
                        repository,
                        f"The merge-bot file of {train.branch}",
                        note.rstrip("."),
                        link=text.queue_page_url(self.settings, repository, train.branch),
                        key="config:" + hashlib.sha256(f"{train.id}:{note}".encode()).hexdigest()[:32],
                    )
                    await enqueue(session, targets(settings), told, now=self.clock.now())
            train.config_problem = note
        return settings

    async def for_branch(self, owner: str, name: str, branch: str) -> Settings:
        """The settings a command on a PR into ``branch`` is judged with (the tip seen lately, else the forge's)."""
        key = _key(owner, name, branch)
        seen = self._tips.get(key)
        now = self.clock.now()
        if seen is not None and now - seen[0] < self._tip_ttl:
            tip = seen[1]
        else:
            tip = await self.forge.branch_sha(owner, name, branch)
            self._tips[key] = (now, tip)
        resolved = await self.resolve(owner, name, branch, tip)
        return effective_settings(self.settings, resolved.file, branch)

    def moved(self, owner: str, name: str, branch: str, sha: str) -> None:
        """A push moved ``branch`` to ``sha``: commands judge by its file from now on."""
        self._tips[_key(owner, name, branch)] = (self.clock.now(), sha)

    # -- reading ----------------------------------------------------------------------------------

    async def resolve(self, owner: str, name: str, branch: str, tip: str) -> Resolved:
        """The file in force at ``tip`` of ``branch`` (read once per repository and tip)."""
        key = (f"{owner}/{name}".lower(), tip)
        found = self._resolved.get(key)
        if found is not None:
            self._resolved.move_to_end(key)
            return found
        mirror = await self.mirrors.ensure(self.clone_url(owner, name))
        if await mirror.resolve(tip) is None:
            await mirror.fetch(f"+refs/heads/{branch}:refs/merge-bot/config/{branch}")
        resolved = await self._read(mirror, tip)
        if resolved.problem is not None:
            log.warning(
                "repoconfig.bad_file",
                repo=f"{owner}/{name}",
                branch=branch,
                tip=tip,
                problem=str(resolved.problem),
                in_force=resolved.source,
            )
            await self._tell(owner, name, resolved)
        self._resolved[key] = resolved
        while len(self._resolved) > CACHED:
            self._resolved.popitem(last=False)
        return resolved

    async def _read(self, mirror: Mirror, tip: str) -> Resolved:
        parsed = await self._parse_at(mirror, tip)
        if not isinstance(parsed, tuple):
            return Resolved(tip, parsed, tip if parsed is not None else None)
        problem = parsed[0]
        changes = await mirror.history(tip, PATHS, HISTORY)
        offending = changes[0] if changes else tip
        for commit in changes[1:]:
            earlier = await self._parse_at(mirror, commit)
            if not isinstance(earlier, tuple):  # a good file, or none: in force until the bad one is fixed
                return Resolved(tip, earlier, commit if earlier is not None else None, problem, offending)
        return Resolved(tip, None, None, problem, offending)

    async def _parse_at(self, mirror: Mirror, sha: str) -> RepoFile | tuple[Problem, ...] | None:
        found = await mirror.show(sha, PATHS)
        if found is None:
            return None
        path, content = found
        return parse(content, path, self.settings)

    async def _tell(self, owner: str, name: str, resolved: Resolved) -> None:
        """The failing status on the commit that brought the bad file, once per commit."""
        assert resolved.problem is not None
        commit = resolved.offending or resolved.tip
        told = (f"{owner}/{name}".lower(), commit)
        if told in self._told:
            return
        self._told.add(told)
        text = str(resolved.problem)
        description = text if len(text) <= STATUS_LIMIT else text[: STATUS_LIMIT - 1] + "…"
        try:
            await self.forge.create_status(
                owner,
                name,
                commit,
                state="failure",
                context=f"{self.settings.status_context}/config",
                description=description,
                target_url=f"{str(self.settings.external_url).rstrip('/')}/queue/{owner}/{name}",
            )
        except errors.ForgeError as exc:
            self._told.discard(told)
            log.warning("repoconfig.status_failed", repo=f"{owner}/{name}", commit=commit, error=str(exc))

    def clone_url(self, owner: str, name: str) -> str:
        return f"{str(self.settings.gitea_url).rstrip('/')}/{owner}/{name}.git"


def _key(owner: str, name: str, branch: str) -> tuple[str, str]:
    return (f"{owner}/{name}".lower(), branch)
