"""Fork PRs: the bot never pushes to a fork's branch, so they are always tested by the staging strategy."""

import pytest

from bot.gate.service import strategy_for
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
