"""Real git repositories in tmp dirs for the git layer's tests.

:class:`Repo` builds histories with plain ``git`` (a worktree repository, a deterministic clock, isolated
from the machine's git config); the code under test then works on the same repository through the bot's
runner.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from bot.git.runner import Identity

BOT = Identity("merge-bot", "merge-bot@example.invalid")
ANN = ("Ann Author", "ann@example.com")
BOB = ("Bob Builder", "bob@example.com")
COMMITTER_DATE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def clean_env(home: Path) -> dict[str, str]:
    """An environment for setup git calls that ignores the machine's config."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "Dan Default",
        "GIT_AUTHOR_EMAIL": "dan@example.com",
        "GIT_COMMITTER_NAME": "Carol Committer",
        "GIT_COMMITTER_EMAIL": "carol@example.com",
    }


class Repo:
    """A worktree repository with helpers to build histories quickly and deterministically."""

    _clock = itertools.count(1_700_000_000, 60)

    def __init__(self, path: Path, *, bare: bool = False) -> None:
        self.path = path
        self.env = clean_env(path.parent)
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", "--initial-branch=main", *(["--bare"] if bare else []))

    def git(self, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.path), *args],
            input=stdin,
            capture_output=True,
            env={**self.env, **(env or {})},
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"git {' '.join(args)}: {done.stderr.decode()}")
        return done.stdout.decode().strip()

    def commit(
        self,
        message: str,
        files: Mapping[str, str | None] | None = None,
        *,
        author: tuple[str, str] = ANN,
        tz: str = "+0200",
    ) -> str:
        """Write ``files`` (None deletes), commit everything with ``message``, return the new id."""
        for name, content in (files or {}).items():
            target = self.path / name
            if content is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
        self.git("add", "--all")
        when = f"@{next(self._clock)} {tz}"
        env = {"GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1], "GIT_AUTHOR_DATE": when}
        self.git(
            "commit",
            "--quiet",
            "--allow-empty",
            "--no-verify",
            "-m",
            message,
            env={**env, "GIT_COMMITTER_DATE": when},
        )
        return self.rev("HEAD")

    def checkout(self, rev: str, *, new: str | None = None) -> None:
        self.git("checkout", "--quiet", *(["-b", new] if new else []), rev)

    def rev(self, rev: str) -> str:
        return self.git("rev-parse", "--verify", rev)

    def show(self, fmt: str, rev: str) -> str:
        """``git show -s --format=<fmt> <rev>``."""
        return self.git("show", "-s", f"--format={fmt}", rev)

    def parents(self, rev: str) -> list[str]:
        return self.show("%P", rev).split()

    def read(self, rev: str, path: str) -> str:
        return self.git("show", f"{rev}:{path}")

    def files(self, rev: str) -> list[str]:
        return self.git("ls-tree", "-r", "--name-only", rev).split()
