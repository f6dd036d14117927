"""The runner: clean environment, token only in the environment, redaction, timeouts that kill."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.git.runner import REDACTED, GitError, GitRunner, GitTimeout, basic_credentials

from .gitrepo import BOT, Repo

TOKEN = "s3cr3t-t0ken-4242"
CREDENTIALS = base64.b64encode(f"merge-bot:{TOKEN}".encode()).decode()
REAL_GIT = shutil.which("git") or "git"


def fake_git(tmp_path: Path, body: str) -> str:
    """A ``git`` executable that runs the shell ``body`` (``$@`` are the arguments)."""
    path = tmp_path / "bin" / "git"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


class AuthRecorder(BaseHTTPRequestHandler):
    """Answers every request 401 and remembers the Authorization headers it saw."""

    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="x"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    AuthRecorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), AuthRecorder)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/owner/repo.git"
    server.shutdown()
    server.server_close()


async def test_token_goes_as_basic_auth_password_from_the_environment_never_in_argv(
    tmp_path: Path, repo: Repo, http_url: str
) -> None:
    log = tmp_path / "argv.log"
    env_log = tmp_path / "env.log"
    wrapper = fake_git(tmp_path, f'printf "%s\\n" "$0" "$@" >> {log}\nenv >> {env_log}\nexec {REAL_GIT} "$@"')
    runner = GitRunner(committer=BOT, token=SecretStr(TOKEN), user="merge-bot", git=wrapper, timeout=30)

    with pytest.raises(GitError) as caught:
        await runner.run(repo.path, "ls-remote", http_url)

    assert AuthRecorder.seen and all(seen == f"Basic {CREDENTIALS}" for seen in AuthRecorder.seen)
    assert base64.b64decode(CREDENTIALS).decode() == f"merge-bot:{TOKEN}"
    assert TOKEN not in log.read_text() and CREDENTIALS not in log.read_text()
    assert [line for line in env_log.read_text().splitlines() if CREDENTIALS in line or TOKEN in line] == [
        f"GIT_CONFIG_VALUE_0=Authorization: Basic {CREDENTIALS}"
    ]
    for secret in (TOKEN, CREDENTIALS):
        assert secret not in str(caught.value) and secret not in repr(caught.value.args)
    assert "terminal prompts disabled" in caught.value.stderr


async def test_header_scoped_to_the_forge_url_is_not_sent_elsewhere(repo: Repo, http_url: str) -> None:
    runner = GitRunner(committer=BOT, token=TOKEN, auth_url="https://gitea.example.com/", timeout=30)
    with pytest.raises(GitError):
        await runner.run(repo.path, "ls-remote", http_url)
    assert AuthRecorder.seen and all(seen == "" for seen in AuthRecorder.seen)


async def test_token_and_its_base64_form_are_redacted_from_errors_and_argv(tmp_path: Path) -> None:
    echo = fake_git(tmp_path, 'echo "fatal: rejected header $GIT_CONFIG_VALUE_0 for $4 and $5" >&2\nexit 128')
    runner = GitRunner(committer=BOT, token=TOKEN, user="merge-bot", git=echo)

    with pytest.raises(GitError) as caught:
        await runner.run(tmp_path, "show", TOKEN, CREDENTIALS)

    error = caught.value
    assert error.returncode == 128
    for secret in (TOKEN, CREDENTIALS):
        assert secret not in error.stderr and secret not in str(error) and secret not in " ".join(error.argv)
    assert error.stderr == f"fatal: rejected header Authorization: Basic {REDACTED} for {REDACTED} and {REDACTED}\n"
    assert error.args == (error.argv, 128, error.stderr)
    assert set(runner.secrets) == {TOKEN, CREDENTIALS}


def test_basic_credentials_are_user_colon_token_in_base64() -> None:
    assert basic_credentials("merge-bot", TOKEN) == CREDENTIALS
    with pytest.raises(ValueError, match="cannot contain"):
        GitRunner(committer=BOT, token=TOKEN, user="a:b")


async def test_timeout_kills_a_hanging_git(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hang = fake_git(tmp_path, f"echo $$ > {pid_file}\nexec sleep 600")
    runner = GitRunner(committer=BOT, git=hang, timeout=0.5)

    with pytest.raises(GitTimeout) as caught:
        await runner.run(tmp_path, "fetch")

    assert caught.value.returncode < 0
    assert "timed out after 0.5s" in str(caught.value)
    assert not process_alive(int(pid_file.read_text()))


async def test_timeout_kills_what_git_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hang = fake_git(tmp_path, f"sleep 600 &\necho $! > {pid_file}\nwait")
    runner = GitRunner(committer=BOT, git=hang, timeout=0.5)

    with pytest.raises(GitTimeout):
        await runner.run(tmp_path, "fetch")

    assert await eventually_dead(int(pid_file.read_text()))


async def test_cancelling_the_caller_kills_git(tmp_path: Path) -> None:
    fifo = tmp_path / "pid.fifo"
    os.mkfifo(fifo)
    hang = fake_git(tmp_path, f"echo $$ > {fifo}\nexec sleep 600")
    runner = GitRunner(committer=BOT, git=hang, timeout=600)
    task = asyncio.create_task(runner.run(tmp_path, "fetch"))
    pid = int(await asyncio.to_thread(fifo.read_text))  # returns once git has started

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert not process_alive(pid)


async def test_machine_config_and_environment_do_not_leak_in(
    tmp_path: Path, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = From Home\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'user.name'='From Env'")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "From Env")
    runner = GitRunner(committer=BOT)

    config = await runner.run(repo.path, "config", "--list", "--show-origin")
    ident = await runner.run(repo.path, "var", "GIT_AUTHOR_IDENT")
    committer = await runner.run(repo.path, "var", "GIT_COMMITTER_IDENT")

    assert "From" not in config.text
    assert ident.text.startswith(f"{BOT.name} <{BOT.email}> ")
    assert committer.text.startswith(f"{BOT.name} <{BOT.email}> ")


async def test_output_is_captured_and_allowed_exit_codes_pass(repo: Repo, runner: GitRunner) -> None:
    head = repo.commit("one", {"a.txt": "a\n"})

    shown = await runner.run(repo.path, "rev-parse", "HEAD")
    missing = await runner.run(repo.path, "rev-parse", "--verify", "--quiet", "nope", ok_returncodes=(0, 1))

    assert shown.text.strip() == head and shown.returncode == 0
    assert missing.returncode == 1 and missing.stdout == b""


async def test_per_call_environment_is_limited_to_dates_and_author(repo: Repo, runner: GitRunner) -> None:
    with pytest.raises(ValueError, match="GIT_CONFIG_COUNT"):
        await runner.run(repo.path, "status", env={"GIT_CONFIG_COUNT": "0"})


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


async def eventually_dead(pid: int, within: float = 5.0) -> bool:
    """Poll until ``pid`` is gone (a killed grandchild is reaped by init, not by us)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while process_alive(pid):
        if loop.time() > deadline:
            os.kill(pid, 9)
            return False
        await asyncio.sleep(0.01)
    return True
