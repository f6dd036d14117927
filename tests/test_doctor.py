"""``merge-bot doctor``'s checks as pure functions of what was observed, and the command's own answers.
The checks against a live simulator and bot are in tests/e2e/test_doctor.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bot.doctor import (
    Candidate,
    Finding,
    SeenHook,
    ci_finding,
    delivery_finding,
    failed,
    protection_finding,
    scope_finding,
    webhook_finding,
)
from bot.forge.client import Branch, Hook

URL = "https://bot.example.org/webhook"
EVENTS = ("pull_request", "issue_comment", "status", "push")
REFUSAL = ("token does not have at least one of required scope(s), required=[write:issue], "
           "token scope=read:user,write:repository")


def hook(hook_id: int = 1, url: str = URL, events: tuple[str, ...] = EVENTS, active: bool = True,
         content_type: str = "json") -> Hook:
    return Hook(hook_id, url, events, active, content_type)


def branch(**changes: object) -> Branch:
    values: dict[str, object] = {"name": "main", "sha": "a" * 40, "protected": True, "rule": "main",
                                 "status_checks": True, "contexts": ("ci/*", "merge-bot"), "user_can_push": True,
                                 "user_can_merge": True}
    values.update(changes)
    return Branch(**values)  # type: ignore[arg-type]


def test_scopes_name_what_is_missing_and_what_the_token_has() -> None:
    ok = scope_finding({"read:user": None, "write:repository": None, "write:issue": None})
    assert ok.ok is True
    bad = scope_finding({"read:user": None, "write:repository": None, "write:issue": REFUSAL})
    assert (bad.ok, bad.text) == (False, "the token lacks write:issue (it has: read:user,write:repository): "
                                         "create a token with read:user, write:repository, write:issue for the "
                                         "bot's user")
    untried = scope_finding({"read:user": None, "write:issue": "DELETE /x: 502 bad gateway"})
    assert (untried.ok, untried.text) == (None, "write:issue could not be tried: DELETE /x: 502 bad gateway")


def test_webhook_must_point_at_the_bot_once_active_as_json_with_every_event() -> None:
    assert webhook_finding("a/b", [SeenHook(hook(url=URL + "/"), False)], URL).ok is True
    assert "no webhook points at" in webhook_finding("a/b", [SeenHook(hook(url="http://x/y"), False)], URL).text
    twice = webhook_finding("a/b", [SeenHook(hook(1), False), SeenHook(hook(7), True)], URL)
    assert (twice.ok, "(hook 1, organisation hook 7)" in twice.text) == (False, True)
    assert "sends form bodies" in webhook_finding("a/b", [SeenHook(hook(content_type="form"), False)], URL).text
    lacking = webhook_finding("a/b", [SeenHook(hook(events=("push", "pull_request")), False)], URL)
    assert "does not send issue_comment, status" in lacking.text
    org = webhook_finding("a/b", [SeenHook(hook(9), True)], URL)
    assert (org.ok, org.text.startswith("organisation hook 9 sends")) == (True, True)


def test_an_organisations_hook_cannot_be_tested_which_is_not_a_failure() -> None:
    found = delivery_finding("a/b", SeenHook(hook(9), True), None, 10, URL)
    assert found.ok is None and "Gitea tests only a repository's hooks" in found.text


@pytest.mark.parametrize(("changes", "strategy", "expected"), [
    ({}, "staging", None),
    ({"contexts": ("merge-*",)}, "staging", None),  # a glob covering merge-bot counts
    ({"status_checks": False}, "staging", "make merge-bot a required status check of rule 'main'"),
    ({"contexts": ("ci/*",)}, "staging", "make merge-bot a required status check of rule 'main'"),
    ({"user_can_push": False}, "staging", "let merge-bot push to main"),
    ({"user_can_push": False}, "pr-branch", None),  # pr-branch lands through the merge API
    ({"user_can_merge": False}, "pr-branch", "let merge-bot merge into main"),
    ({"protected": False, "rule": ""}, "staging", "main is not protected"),
])
def test_protection(changes: dict[str, object], strategy: str, expected: str | None) -> None:
    found = protection_finding("a/b", "main", branch(**changes), "merge-bot", strategy, "merge-bot")
    if expected is None:
        assert found.ok is True, found.text
    else:
        assert found.ok is False and found.text.startswith(expected), found.text


def test_ci_is_ok_once_any_candidate_got_a_status_that_is_not_the_bots() -> None:
    def candidate(n: int, state: str, contexts: tuple[str, ...] = (), reason: str | None = None) -> Candidate:
        return Candidate(f"merge-bot/main/{n}", f"{n:040d}", state, reason, contexts)

    assert ci_finding("a/b", [], "merge-bot").ok is None
    assert ci_finding("a/b", [candidate(2, "testing")], "merge-bot").ok is None
    assert ci_finding("a/b", [candidate(2, "failed"), candidate(1, "done", ("ci/test",))], "merge-bot").ok is True
    own_only = ci_finding("a/b", [candidate(1, "failed", ("merge-bot", "merge-bot/ci"), "ci_timeout")], "merge-bot")
    assert own_only.ok is False and "(merge-bot/main/1 timed out waiting)" in own_only.text


def test_only_failures_fail() -> None:
    assert failed([Finding("ci", "a/b", None, "?"), Finding("token", "", True, "")]) is False
    assert failed([Finding("ci", "a/b", False, "x")]) is True
    assert Finding("ci", "a/b", None, "later").line() == "?     ci a/b: later"


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("MERGE_BOT_")}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def test_doctor_refuses_a_bad_wait_in_one_line() -> None:
    result = _cli("doctor", "--wait", "0", env={"MERGE_BOT_WEBHOOK_SECRET": "x"})
    assert result.returncode == 2
    assert "argument --wait: must be more than 0" in result.stderr and "Traceback" not in result.stderr


def test_doctor_against_a_forge_that_does_not_answer_fails_in_one_line() -> None:
    result = _cli("doctor", env={
        "MERGE_BOT_WEBHOOK_SECRET": "x", "MERGE_BOT_GITEA_URL": "http://127.0.0.1:9",
        "MERGE_BOT_GITEA_TOKEN": "t0ken-value", "MERGE_BOT_REPOS": "a/b",
        "MERGE_BOT_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
    })
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("FAIL  token: http://127.0.0.1:9 did not answer GET /user")
    assert result.stdout.count("\n") == 1
    assert "t0ken-value" not in result.stdout + result.stderr and "Traceback" not in result.stderr
