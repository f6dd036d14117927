"""Required checks on one SHA: only success is green, a missing context is pending, never success."""

from __future__ import annotations

import pytest

from bot.queue.checks import Verdict, evaluate, latest_per_context
from bot.queue.model import RequiredChecks, StatusView

ANY = RequiredChecks(None)


def s(context: str, state: str, url: str = "") -> StatusView:
    return StatusView(context, state, url)


@pytest.mark.parametrize(
    ("required", "statuses", "verdict"),
    [
        # "at least one status and all green"
        (ANY, [], Verdict.PENDING),
        (ANY, [s("ci/test", "success")], Verdict.SUCCESS),
        (ANY, [s("ci/test", "success"), s("ci/lint", "pending")], Verdict.PENDING),
        (ANY, [s("ci/test", "success"), s("ci/lint", "failure")], Verdict.FAILURE),
        (ANY, [s("ci/test", "error")], Verdict.FAILURE),
        # the bot's own context and its mirrors never count, in either direction
        (ANY, [s("merge-bot", "success")], Verdict.PENDING),
        (ANY, [s("merge-bot", "failure"), s("merge-bot/ci/test", "failure"), s("ci", "success")], Verdict.SUCCESS),
        # explicit contexts and globs (branch protection status_check_contexts)
        (RequiredChecks(("ci/test",)), [s("ci/lint", "success")], Verdict.PENDING),
        (RequiredChecks(("ci/test",)), [s("ci/test", "success"), s("ci/lint", "failure")], Verdict.SUCCESS),
        (RequiredChecks(("ci/*",)), [s("ci/test", "success"), s("ci/lint", "pending")], Verdict.PENDING),
        (RequiredChecks(("ci/*",)), [s("ci/test", "success"), s("ci/lint", "success")], Verdict.SUCCESS),
        (RequiredChecks(("ci/*", "deploy")), [s("ci/test", "success")], Verdict.PENDING),
        (RequiredChecks(("ci/*",)), [s("other", "success")], Verdict.PENDING),
        # warning and skipped are not success: a required check must be green on the SHA
        (RequiredChecks(("ci/test",)), [s("ci/test", "warning")], Verdict.FAILURE),
        (RequiredChecks(("ci/test",)), [s("ci/test", "skipped")], Verdict.FAILURE),
    ],
)
def test_verdicts(required: RequiredChecks, statuses: list[StatusView], verdict: Verdict) -> None:
    assert evaluate(required, statuses).verdict is verdict


def test_latest_status_per_context_wins() -> None:
    # Newest first, as Gitea lists them: a flaky context that failed, then passed on a re-run, is green.
    flaky = [s("ci/test", "success"), s("ci/test", "failure"), s("ci/test", "pending")]
    assert latest_per_context(flaky)["ci/test"].state == "success"
    assert evaluate(ANY, flaky).verdict is Verdict.SUCCESS
    assert evaluate(ANY, list(reversed(flaky))).verdict is Verdict.PENDING


def test_failure_names_the_context_and_link() -> None:
    result = evaluate(ANY, [s("ci/b", "failure", "http://ci/b/1"), s("ci/a", "success")])
    assert result.failed == s("ci/b", "failure", "http://ci/b/1")


def test_missing_contexts_are_reported() -> None:
    result = evaluate(RequiredChecks(("ci/test", "ci/lint")), [s("ci/test", "pending")])
    assert result.missing == ("ci/lint",)
    assert result.pending == ("ci/test",)
