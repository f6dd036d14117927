"""Secrets never reach the logs: not in messages, not in exceptions, not in URLs."""

from __future__ import annotations

import io
import json
import logging

from bot import logs


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
