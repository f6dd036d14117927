"""`merge-bot serve` as a process: embedded PostgreSQL started, re-attached after a crash, stopped on exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
TOKEN = "tok-5e7c0ffee0ddba11"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MERGE_BOT_")}
    env.update(
        MERGE_BOT_WEBHOOK_SECRET="serve-test-secret",
        # A token for a forge that is not there: the queue's set-up fails and retries, and logs why.
        MERGE_BOT_GITEA_TOKEN=TOKEN,
        MERGE_BOT_GITEA_URL=f"http://127.0.0.1:{free_port()}",
        MERGE_BOT_REPOS="acme/app",
        MERGE_BOT_DATA_DIR=str(data_dir),
        MERGE_BOT_LISTEN=f"127.0.0.1:{port}",
        MERGE_BOT_LOG_FORMAT="json",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "merge-bot serve exited early"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise AssertionError("merge-bot serve did not become healthy")


def postmaster_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / "postgres" / "postmaster.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().splitlines()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def test_embedded_database_lifecycle(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "serve.log"
    port = free_port()

    first = start(data_dir, port, log)
    try:
        wait_healthy(port, first)
        server_pid = postmaster_pid(data_dir)
        assert server_pid is not None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)

    # A SIGKILLed owner leaves the server running; the next start re-attaches to that same server.
    assert postmaster_pid(data_dir) == server_pid
    second = start(data_dir, port, log)
    try:
        wait_healthy(port, second)
        assert postmaster_pid(data_dir) == server_pid
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0

    # A clean exit stops the server it was the last user of.
    assert postmaster_pid(data_dir) is None
    output = log.read_text()
    assert '"serve.stopping"' in output
    assert "serve-test-secret" not in output

    # And a cold start on the same directory finds the data again (the schema is already at head).
    third = start(data_dir, port, log)
    try:
        wait_healthy(port, third)
        # The forge is unreachable: the queue's set-up fails, says why, and retries; the token stays secret.
        deadline = time.monotonic() + 60
        while '"queue.setup_failed"' not in log.read_text():
            assert time.monotonic() < deadline, "the bot never reported the unreachable forge"
            time.sleep(0.2)
        assert TOKEN not in log.read_text()
    finally:
        third.send_signal(signal.SIGTERM)
        assert third.wait(timeout=60) == 0
    assert postmaster_pid(data_dir) is None
