"""The one place that runs git for the bot.

Every git process the bot starts goes through :meth:`GitRunner.run`: ``git -C <dir> ...`` with output
captured, a timeout that kills the whole process group and waits for it, and a :class:`GitError` on failure.

The environment is built from scratch, never inherited: no system or global config (``GIT_CONFIG_NOSYSTEM``,
``GIT_CONFIG_GLOBAL=/dev/null``), ``HOME`` pointing at a private directory (or ``/dev/null``) so no
``~/.netrc`` or XDG config is read, no terminal prompts, C locale (so output can be parsed), and a fixed
committer identity. The forge token travels as HTTP Basic credentials (``Authorization: Basic
base64(user:token)``) in ``http.extraHeader``, through ``GIT_CONFIG_COUNT`` variables: never in a URL, never in
argv. Any text the runner hands back (argv, stderr, error messages) has the token and the base64 credentials
replaced by ``[redacted]``. Stdout is data (objects, ids) and is returned as git wrote it.

Why Basic and not ``Authorization: token <t>`` (which the API takes): on git paths Basic with the token as
the password is the one form every Gitea and Forgejo release accepts. Read in their ``services/auth/``:

- Gitea ``services/auth/basic.go``, ``Basic.Verify``: runs on API paths and on git paths in every version
  read (the path check is ``isGitRawReleaseOrLFSPath`` in the releases still using ``*models.User``,
  ``isGitRawOrAttachOrLFSPath`` later); a password that is neither empty nor ``x-oauth-basic`` is taken as
  the token (``GetAccessTokenBySHA``) and the user name is not compared. Forgejo's reworked auth,
  ``services/auth/method/basic.go`` ``Basic.Verify`` (and ``tokenFromAuthorizationBasic`` in
  ``services/auth/method/util.go``), does the same.
- Gitea ``services/auth/oauth2.go``, ``OAuth2.Verify``, the method that reads ``token``/``Bearer`` headers: in
  the older releases (``Verify`` returns a bare ``*user_model.User`` and checks ``db.HasEngine``) it returns
  early unless ``middleware.IsAPIPath(req) || isAttachmentDownload(req) || isAuthenticatedTokenRequest(req)``,
  so a ``token`` header on ``/owner/repo.git/info/refs`` authenticates nobody and git gets a 401; later
  releases add ``isGitRawOrAttachPath(req)`` to that list. The ``token`` scheme on git paths is a newer
  releases' feature.
- Forgejo: the code read accepts ``token``/``Bearer`` on git paths, both before its auth rework
  (``services/auth/oauth2.go``, ``OAuth2.Verify`` with ``isGitRawOrAttachPath``) and after it
  (``services/auth/method/access_token.go``, ``AccessToken.Verify``: ``legacySkipFormAndBearer`` lets
  ``isGitRawOrAttachPath`` through). Basic is still the form all of them take.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog
from pydantic import SecretStr

REDACTED = "[redacted]"
DEFAULT_TIMEOUT = 120.0
DEFAULT_USER = "merge-bot"
CALL_ENV = frozenset({"GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"})

_log = structlog.stdlib.get_logger("bot.git")


@dataclass(frozen=True)
class Identity:
    """A git name and email, e.g. the bot's committer identity."""

    name: str
    email: str


@dataclass(frozen=True)
class GitResult:
    """The captured outcome of one git command (argv already redacted)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        """Stdout decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")


class GitError(Exception):
    """A git command failed; ``argv`` and ``stderr`` are redacted. ``args == (argv, returncode, stderr)``."""

    def __init__(self, argv: tuple[str, ...], returncode: int, stderr: str) -> None:
        super().__init__(argv, returncode, stderr)
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr

    def __str__(self) -> str:
        command = " ".join(self.argv)
        detail = self.stderr.strip()
        if len(detail) > 2000:
            detail = "..." + detail[-2000:]
        return f"`{command}` failed with exit code {self.returncode}: {detail or '(no output)'}"


class GitTimeout(GitError):
    """A git command ran past its timeout and was killed (``returncode`` is the killing signal, negated)."""


class GitRunner:
    """Runs git with a clean environment, a timeout that kills, and the token only in the environment.

    ``committer`` is the identity every commit the bot creates gets as committer (and as author, unless a
    call passes ``GIT_AUTHOR_*``). ``token`` is the forge token, sent as the password of HTTP Basic with ``user``
    (the bot's login; Gitea and Forgejo ignore the name when the password is a token); ``auth_url`` (e.g.
    ``https://gitea.example/``) limits the ``Authorization`` header to URLs under it; without it the header
    goes to every HTTP remote.
    """

    def __init__(
        self,
        *,
        committer: Identity,
        token: SecretStr | str | None = None,
        user: str = DEFAULT_USER,
        auth_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        git: str = "git",
        home: Path | None = None,
    ) -> None:
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        self._git = git
        self.timeout = timeout
        self._env = _base_env(committer, home)
        self.secrets: tuple[str, ...] = ()
        """The token and its base64 Basic credentials: every form of the secret git is given (longest first)."""
        if secret:
            if ":" in user:
                raise ValueError("a Basic user name cannot contain ':'")
            credentials = basic_credentials(user, secret)
            self.secrets = (credentials, secret) if len(credentials) >= len(secret) else (secret, credentials)
            key = f"http.{auth_url}.extraHeader" if auth_url else "http.extraHeader"
            self._env.update(_config_env({key: f"Authorization: Basic {credentials}"}))

    def redact(self, text: str) -> str:
        """``text`` with the token and its base64 credentials replaced by ``[redacted]``."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    async def run(
        self,
        cwd: Path | str,
        *args: str,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        # The runner owns the timeout (rather than the caller's asyncio.timeout) because on expiry it must
        # kill the process group and say which command hung.
        timeout: float | None = None,  # noqa: ASYNC109
        ok_returncodes: Collection[int] = (0,),
    ) -> GitResult:
        """Run ``git -C cwd *args``; raise :class:`GitError` unless the exit code is in ``ok_returncodes``.

        ``env`` sets author and commit dates for this call only (the names in ``CALL_ENV``); nothing a
        call passes can change the config, credentials or committer identity. :class:`GitTimeout` is
        raised when the command outlives ``timeout`` (default: the runner's); the process and everything
        it started are killed first.
        """
        extra = dict(env or {})
        if not extra.keys() <= CALL_ENV:
            raise ValueError(f"not a per-call git variable: {sorted(extra.keys() - CALL_ENV)}")
        argv = (self._git, "-C", str(cwd), *args)
        shown = tuple(self.redact(arg) for arg in argv)
        limit = self.timeout if timeout is None else timeout
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**self._env, **extra} if extra else self._env,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(limit):
                out, err = await proc.communicate(stdin)
        except TimeoutError:
            await _kill(proc)
            _log.warning("git timed out", argv=shown, timeout=limit)
            killed = proc.returncode or -signal.SIGKILL
            raise GitTimeout(shown, killed, f"timed out after {limit:g}s") from None
        except BaseException:
            await _kill(proc)
            raise
        returncode = proc.returncode if proc.returncode is not None else -1
        result = GitResult(shown, returncode, out, self.redact(err.decode("utf-8", "replace")))
        _log.debug("git", argv=shown, returncode=returncode, seconds=round(time.monotonic() - started, 4))
        if returncode not in ok_returncodes:
            raise GitError(shown, returncode, result.stderr)
        return result


def basic_credentials(user: str, token: str) -> str:
    """The value after ``Authorization: Basic``: base64 of ``user:token``."""
    return base64.b64encode(f"{user}:{token}".encode()).decode("ascii")


def _base_env(committer: Identity, home: Path | None) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home) if home is not None else os.devnull,
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_COMMITTER_NAME": committer.name,
        "GIT_COMMITTER_EMAIL": committer.email,
        "GIT_AUTHOR_NAME": committer.name,
        "GIT_AUTHOR_EMAIL": committer.email,
    }


def _config_env(config: Mapping[str, str]) -> dict[str, str]:
    """Git config passed as ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``."""
    env = {"GIT_CONFIG_COUNT": str(len(config))}
    for index, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """Kill the process group the command leads (git's helpers included) and reap the process."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()
