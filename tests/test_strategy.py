"""Strategies: fork PRs are always tested by staging (the bot never pushes to a fork), and what each strategy's
plan (bot/gate/strategies.py) says about refs, entries and approvals."""

import pytest

from bot.db.models import PullRequest
from bot.gate.service import strategy_for
from bot.gate.strategies import plan_for
from bot.queue.model import Strategy


@pytest.mark.parametrize(
    ("wanted", "heads", "chosen"),
    [
        (Strategy.PR_BRANCH, ["acme/app"], Strategy.PR_BRANCH),
        (Strategy.PR_BRANCH, ["ACME/App"], Strategy.PR_BRANCH),
        (Strategy.PR_BRANCH, [None], Strategy.PR_BRANCH),
        (Strategy.PR_BRANCH, ["someone/app"], Strategy.STAGING),
        (Strategy.PR_BRANCH, ["acme/app", "someone/app"], Strategy.STAGING),
        (Strategy.STAGING, ["someone/app"], Strategy.STAGING),
        (Strategy.STAGING, ["acme/app"], Strategy.STAGING),
    ],
)
def test_strategy_for(wanted: Strategy, heads: list[str | None], chosen: Strategy) -> None:
    assert strategy_for(wanted, "acme/app", heads) is chosen


def test_each_strategy_names_its_candidate_ref_and_how_many_entries_it_carries() -> None:
    one, two = PullRequest(number=1, head_ref="feature"), PullRequest(number=2, head_ref="other")
    staging, pr_branch = plan_for(Strategy.STAGING), plan_for("pr-branch")
    assert staging.max_entries is None
    assert staging.candidate_ref("main", 12, [one, two]) == "refs/heads/merge-bot/main/12"
    assert staging.staging_branch("refs/heads/merge-bot/main/12") == "merge-bot/main/12"
    assert pr_branch.max_entries == 1
    assert pr_branch.candidate_ref("main", 12, [one]) == "refs/heads/feature"
    assert pr_branch.staging_branch("refs/heads/feature") is None
    with pytest.raises(ValueError):
        pr_branch.candidate_ref("main", 12, [one, two])


def test_only_pr_branch_moves_the_approval_to_its_own_rebase() -> None:
    rebased = PullRequest(number=1, head_sha="c" * 40)
    assert plan_for(Strategy.PR_BRANCH).approval_after_abandon("c" * 40, rebased) == "c" * 40
    assert plan_for(Strategy.PR_BRANCH).approval_after_abandon("d" * 40, rebased) is None
    assert plan_for(Strategy.STAGING).approval_after_abandon("c" * 40, rebased) is None
