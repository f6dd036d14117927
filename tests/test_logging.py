"""Secrets never reach the logs: not in messages, not in exceptions, not in URLs."""

from __future__ import annotations

import base64
import io
import json
import logging

from bot import logs
from bot.git.runner import GitRunner, Identity


def test_token_and_secret_are_redacted_everywhere() -> None:
    token = "tok-9f8e7d6c5b4a"
    secret = "whsec-0a1b2c3d"
    stream = io.StringIO()
    logs.configure("debug", "json", [token, secret], stream=stream)
    log = logs.get_logger("test")
    log.info("calling forge", url=f"http://bot:{token}@gitea/api", headers={"Authorization": f"token {token}"})
    try:
        raise RuntimeError(f"request failed with secret {secret} and token {token}")
    except RuntimeError:
        log.exception("boom")
    logging.getLogger("aiohttp.client").warning("stdlib says %s", token)
    output = stream.getvalue()
    assert token not in output
    assert secret not in output
    assert output.count(logs.REDACTED) >= 5
    lines = [json.loads(line) for line in output.splitlines()]
    assert lines[0]["event"] == "calling forge"
    assert "RuntimeError" in lines[1]["exception"]


def test_console_format_is_used_when_asked() -> None:
    stream = io.StringIO()
    logs.configure("info", "console", [], stream=stream)
    logs.get_logger("test").info("hello", n=1)
    output = stream.getvalue()
    assert "hello" in output and not output.startswith("{")


def test_the_git_basic_credentials_are_redacted_like_the_token() -> None:
    """The runner sends ``Basic base64(login:token)``; the service hands both forms to the redactor."""
    token = "tok-1a2b3c4d5e6f"
    runner = GitRunner(committer=Identity("merge-bot", "bot@example.invalid"), token=token, user="merge-bot")
    credentials = base64.b64encode(f"merge-bot:{token}".encode()).decode()
    assert token not in credentials  # base64 hides the token: it needs redacting on its own
    stream = io.StringIO()
    logs.configure("debug", "json", [], stream=stream)
    logs.REDACTOR.add(*runner.secrets)  # what QueueService.run does with its runner
    log = logs.get_logger("test")
    log.info("git env", header=f"Authorization: Basic {credentials}", env={"GIT_CONFIG_VALUE_0": credentials})
    logging.getLogger("aiohttp.client").warning("sent %s", f"Basic {credentials}")
    output = stream.getvalue()
    assert credentials not in output and token not in output
    assert output.count(logs.REDACTED) == 3
