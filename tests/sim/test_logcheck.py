"""The checks on the simulator's log (gitea_sim.logcheck) that the crash suite and bench/throughput.py share:
hand-written logs in the shape gitea_sim.core (``push``) and gitea_sim.ci (``ci``) record them."""

from __future__ import annotations

from typing import Any

from gitea_sim.gitrepo import ZERO_SHA
from gitea_sim.logcheck import base_moves, untested_base_moves

REPO = "owner/app"
A, B, C = ("a" * 40, "b" * 40, "c" * 40)


class Log:
    """A log in the making: each event gets the next sequence number, as gitea_sim.faults.EventLog does."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def add(self, kind: str, **data: Any) -> None:
        self.entries.append({"seq": len(self.entries) + 1, "kind": kind, "time": 0.0, **data})

    def push(self, before: str, after: str, ref: str = "refs/heads/main", pusher: str = "merge-bot") -> None:
        self.add("push", repo=REPO, ref=ref, before=before, after=after, pusher=pusher)

    def ci(self, sha: str, state: str, context: str = "ci/test") -> None:
        self.add("ci", run=len(self.entries), repo=REPO, sha=sha, context=context, phase="start", fault="")
        self.add("ci", run=len(self.entries), repo=REPO, sha=sha, context=context, phase="done", state=state)


def test_a_fast_forward_to_a_sha_green_before_it_is_kept() -> None:
    log = Log()
    log.push(ZERO_SHA, A, pusher="owner")  # the set-up: main created
    since = len(log.entries)
    log.push(ZERO_SHA, B, ref="refs/heads/merge-bot/main/1")
    log.ci(B, "failure")
    log.ci(B, "success")  # a re-test on the same SHA: green counts from here
    log.push(A, B)
    assert untested_base_moves(log.entries, since) == []
    assert [move["after"] for move in base_moves(log.entries, since)] == [B]


def test_moves_to_a_sha_red_or_untested_or_green_only_later_are_violations() -> None:
    log = Log()
    log.push(ZERO_SHA, A, pusher="owner")
    since = len(log.entries)
    log.ci(B, "failure")
    log.push(A, B)  # red only
    log.push(B, C)  # never tested ...
    log.ci(C, "success")  # ... until after the push
    found = untested_base_moves(log.entries, since)
    assert len(found) == 2
    assert f"no ci/test success on {B[:10]}" in found[0]
    assert f"no ci/test success on {C[:10]}" in found[1]


def test_green_on_another_context_does_not_count() -> None:
    log = Log()
    log.push(ZERO_SHA, A, pusher="owner")
    since = len(log.entries)
    log.ci(B, "success", context="lint")
    log.push(A, B)
    assert untested_base_moves(log.entries, since) != []
    assert untested_base_moves(log.entries, since, context="lint") == []


def test_not_from_the_tip_a_second_move_to_a_sha_and_a_deletion_are_violations() -> None:
    log = Log()
    log.push(ZERO_SHA, A, pusher="owner")
    since = len(log.entries)
    log.ci(B, "success")
    log.ci(C, "success")
    log.push(A, B)
    log.push(A, C)  # the base was at B
    log.push(C, B)  # back to B: a second time
    log.push(B, ZERO_SHA)
    found = untested_base_moves(log.entries, since)
    assert any("not from the tip" in v and f"{B[:10]}" in v for v in found)
    assert any("a second time" in v for v in found)
    assert any("the base was deleted" in v for v in found)


def test_with_pusher_only_that_users_moves_are_judged_and_the_others_set_the_tip() -> None:
    log = Log()
    log.push(ZERO_SHA, A, pusher="owner")
    since = len(log.entries)
    log.push(A, B, pusher="owner")  # a person pushing to the base, untested
    log.ci(C, "success")
    log.push(B, C)  # the bot, from the tip the person left
    assert untested_base_moves(log.entries, since, pusher="merge-bot") == []
    assert len(untested_base_moves(log.entries, since)) == 1
