"""A cached bare mirror per repository, and pushes fenced by the SHAs the bot expects.

``MirrorCache(runner, data_dir).ensure(url)`` creates ``<data_dir>/<name>-<hash>.git`` once (``git init
--bare`` into a temporary directory, then an atomic rename, so concurrent callers agree on one mirror) and
fetches its branches. :class:`Mirror` then fetches, and pushes with explicit expectations:

- :meth:`Mirror.push_ref` / :meth:`Mirror.delete_ref`: ``--force-with-lease=<ref>:<expected>`` for refs
  the bot owns (staging refs, a PR branch it rebases): the remote moves only if it still holds ``expected``.
- :meth:`Mirror.push_fast_forward`: a plain push without force, for the base branch.
- :meth:`Mirror.remote_sha`: what a remote ref holds now, to retry a lease from the value actually there.

Expected refusals come back as :class:`Rejected` (non-fast-forward, stale lease, refused by the remote);
anything else (network, authentication, a missing repository) raises ``GitError``. Outcomes are read
from ``git push --porcelain``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from bot.git.runner import GitError, GitResult, GitRunner

BRANCHES = "+refs/heads/*:refs/heads/*"
_REMOTE = "origin"
_OK_FLAGS = frozenset(" +*-=")
_SUMMARY_RE = re.compile(r"^\[(?P<status>[^\]]+)\](?: \((?P<reason>.*)\))?$")


class Rejection(StrEnum):
    """Why the remote did not move a ref."""

    NON_FAST_FORWARD = "non-fast-forward"
    """The remote ref has commits the pushed commit does not contain."""
    STALE_LEASE = "stale-lease"
    """The remote ref is not at the value the bot expected (``--force-with-lease``)."""
    REMOTE_REJECTED = "remote-rejected"
    """The remote refused, e.g. a protected branch or a hook; ``detail`` says why."""
    OTHER = "other"


@dataclass(frozen=True)
class Pushed:
    """The remote ``ref`` now holds ``new_sha`` (None: deleted); ``up_to_date`` if it already did."""

    ref: str
    new_sha: str | None
    up_to_date: bool = False


@dataclass(frozen=True)
class Rejected:
    """The remote kept ``ref`` as it was. ``detail`` is git's reason plus any ``remote:`` lines."""

    ref: str
    reason: Rejection
    detail: str


PushResult = Pushed | Rejected


@dataclass(frozen=True)
class PorcelainLine:
    """One ref line of ``git push --porcelain``: flag, ``from:to``, summary and reason."""

    flag: str
    source: str
    ref: str
    status: str
    reason: str


def parse_push_porcelain(stdout: str) -> dict[str, PorcelainLine]:
    """The ref lines of ``git push --porcelain`` output, by destination ref."""
    lines: dict[str, PorcelainLine] = {}
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or len(parts[0]) != 1:
            continue
        flag, refspec, summary = parts
        source, _, ref = refspec.rpartition(":")
        match = _SUMMARY_RE.match(summary)
        status, reason = (match["status"], match["reason"] or "") if match else (summary, "")
        lines[ref] = PorcelainLine(flag, source, ref, status, reason)
    return lines


def classify(line: PorcelainLine, new_sha: str | None, stderr: str) -> PushResult:
    """Turn a porcelain line into a typed outcome."""
    if line.flag in _OK_FLAGS:
        return Pushed(line.ref, new_sha, up_to_date=line.flag == "=")
    if line.status == "rejected" and line.reason == "stale info":
        reason = Rejection.STALE_LEASE
    elif line.status == "rejected" and line.reason in ("non-fast-forward", "fetch first"):
        reason = Rejection.NON_FAST_FORWARD
    elif line.status == "remote rejected":
        reason = Rejection.REMOTE_REJECTED
    else:
        reason = Rejection.OTHER
    remote = [text for text in stderr.splitlines() if text.startswith("remote:")]
    detail = "; ".join([f"{line.status} ({line.reason})" if line.reason else line.status, *remote])
    return Rejected(line.ref, reason, detail)


def mirror_name(remote_url: str) -> str:
    """A directory name for ``remote_url``: ``owner_repo-<hash of the whole URL>.git``."""
    owner_repo = urlsplit(remote_url).path.strip("/").removesuffix(".git").split("/")[-2:]
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", "_".join(owner_repo))[-60:].strip("._") or "repo"
    digest = hashlib.sha256(remote_url.encode()).hexdigest()[:12]
    return f"{readable}-{digest}.git"


def _check_url(remote_url: str) -> None:
    parts = urlsplit(remote_url)
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials do not belong in a remote URL; give the runner the token")
    if remote_url.startswith("-"):
        raise ValueError(f"not a remote URL: {remote_url!r}")


def _check_ref(ref: str) -> None:
    if not ref.startswith("refs/") or any(c in ref for c in " \t\n:^~?*[\\") or ".." in ref:
        raise ValueError(f"not a full ref name: {ref!r}")


def _check_sha(sha: str) -> None:
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha):
        raise ValueError(f"not a full object id: {sha!r}")


class Mirror:
    """A bare repository at ``path`` whose ``origin`` is ``remote_url``."""

    def __init__(self, runner: GitRunner, path: Path, remote_url: str) -> None:
        self.runner = runner
        self.path = path
        self.remote_url = remote_url

    async def fetch(self, *refspecs: str, prune: bool = False) -> None:
        """Fetch ``refspecs`` (default: all branches, force-updated) from the remote."""
        for spec in refspecs:
            if spec.startswith("-"):
                raise ValueError(f"not a refspec: {spec!r}")
        flags = ["--prune"] if prune else []
        await self._git(
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            *flags,
            _REMOTE,
            *(refspecs or (BRANCHES,)),
        )

    async def resolve(self, rev: str) -> str | None:
        """The commit id ``rev`` names in the mirror, or None."""
        if rev.startswith("-"):
            raise ValueError(f"not a revision: {rev!r}")
        result = await self._git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", ok=(0, 1))
        return result.text.strip() or None

    async def tree_of(self, sha: str) -> str | None:
        """The tree of commit ``sha`` in the mirror, or None when the mirror does not have it."""
        if sha.startswith("-"):
            raise ValueError(f"not a revision: {sha!r}")
        result = await self._git("rev-parse", "--verify", "--quiet", f"{sha}^{{tree}}", ok=(0, 1))
        return result.text.strip() or None

    async def show(self, sha: str, paths: Sequence[str]) -> tuple[str, bytes] | None:
        """The first of ``paths`` that is a file at commit ``sha``, with its content; None when none is."""
        _check_sha(sha)
        for path in paths:
            if not path or path.startswith(("-", "/")) or "\n" in path:
                raise ValueError(f"not a path in a commit: {path!r}")
        wanted = "".join(f"{sha}:{path}\n" for path in paths).encode()
        result = await self.runner.run(self.path, "cat-file", "--batch", stdin=wanted)
        out, position = result.stdout, 0
        for path in paths:
            end = out.index(b"\n", position)
            header = out[position:end].split(b" ")
            position = end + 1
            if len(header) != 3:  # "<rev> missing" (or ambiguous): nothing at that path
                continue
            size = int(header[2])
            content = out[position : position + size]
            position += size + 1
            if header[1] == b"blob":
                return path, content
        return None

    async def history(self, sha: str, paths: Sequence[str], limit: int) -> list[str]:
        """The last ``limit`` commits reachable from ``sha`` that changed any of ``paths``, newest first."""
        _check_sha(sha)
        result = await self._git("rev-list", f"--max-count={limit}", sha, "--", *paths)
        return result.text.split()

    async def remote_sha(self, ref: str) -> str | None:
        """What the remote's ``ref`` (a full ref name) holds right now, or None if it does not exist."""
        _check_ref(ref)
        result = await self._git("ls-remote", "--refs", _REMOTE, ref)
        for line in result.text.splitlines():
            sha, _, name = line.partition("\t")
            if name == ref:
                return sha
        return None

    async def push_ref(self, ref: str, new_sha: str, expected_old_sha: str | None) -> PushResult:
        """Set the remote ``ref`` to ``new_sha`` only if it holds ``expected_old_sha`` (None: absent)."""
        _check_ref(ref)
        _check_sha(new_sha)
        return await self._push(ref, f"{new_sha}:{ref}", new_sha, self._lease(ref, expected_old_sha))

    async def push_fast_forward(self, branch: str, sha: str) -> PushResult:
        """Move the remote ``branch`` to ``sha`` by a fast-forward; never forced."""
        ref = f"refs/heads/{branch}"
        _check_ref(ref)
        _check_sha(sha)
        return await self._push(ref, f"{sha}:{ref}", sha, ())

    async def delete_ref(self, ref: str, expected_old_sha: str) -> PushResult:
        """Delete the remote ``ref`` only if it holds ``expected_old_sha``."""
        _check_ref(ref)
        return await self._push(ref, f":{ref}", None, self._lease(ref, expected_old_sha))

    def _lease(self, ref: str, expected: str | None) -> tuple[str, ...]:
        if expected is not None:
            _check_sha(expected)
        return (f"--force-with-lease={ref}:{expected or ''}",)

    async def _push(self, ref: str, refspec: str, new_sha: str | None, flags: tuple[str, ...]) -> PushResult:
        result = await self._git("push", "--porcelain", *flags, _REMOTE, refspec, ok=(0, 1))
        line = parse_push_porcelain(result.text).get(ref)
        if line is None:
            raise GitError(result.argv, result.returncode, result.stderr)
        return classify(line, new_sha, result.stderr)

    async def _git(self, *args: str, ok: tuple[int, ...] = (0,)) -> GitResult:
        return await self.runner.run(self.path, *args, ok_returncodes=ok)


class MirrorCache:
    """The bot's mirrors, one bare repository per remote URL under ``data_dir``."""

    def __init__(self, runner: GitRunner, data_dir: Path) -> None:
        self.runner = runner
        self.data_dir = data_dir
        self._locks: dict[Path, asyncio.Lock] = {}

    def path_for(self, remote_url: str) -> Path:
        return self.data_dir / mirror_name(remote_url)

    async def ensure(self, remote_url: str) -> Mirror:
        """The mirror of ``remote_url``; created and its branches fetched on first use."""
        _check_url(remote_url)
        path = self.path_for(remote_url)
        mirror = Mirror(self.runner, path, remote_url)
        async with self._locks.setdefault(path, asyncio.Lock()):
            if not (path / "HEAD").exists():
                await self._create(path, remote_url)
                await mirror.fetch()
        return mirror

    async def _create(self, path: Path, remote_url: str) -> None:
        """``git init --bare`` beside ``path``, then rename into place; a mirror made meanwhile wins."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        scratch = self.data_dir / f".{path.name}.{uuid.uuid4().hex}.tmp"
        try:
            await self.runner.run(self.data_dir, "init", "--quiet", "--bare", "--initial-branch=main", str(scratch))
            await self.runner.run(scratch, "config", "remote.origin.url", remote_url)
            try:
                os.rename(scratch, path)
            except OSError:
                if not (path / "HEAD").exists():
                    raise
        finally:
            if scratch.exists():
                await asyncio.to_thread(shutil.rmtree, scratch, True)
