"""Batches and bisection as operators see them: the chain of active attempts in order, a bisection's parts
with what is known so far, which batch a finished PR was tested in, the bisection events on a PR's page, and
flaky failures per check context — on the queue page, in the JSON API (against the OpenAPI file), in
``merge-bot status`` and in ``/metrics``. Built from database rows made here, as the gate writes them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot import status
from bot.db.models import Attempt, AttemptEntry, CommitStatus, Entry, EntryEvent, PullRequest, Repository, Train
from bot.web import views
from tests.web import spec
from tests.web.conftest import NOW, Client, ago
from tests.web.test_metrics import TRAIN, scrape, value
from tests.web.test_pages import page, text_of

RUN = "https://ci.example.org/runs/40"


@dataclass
class Bisecting:
    """Attempt ids by name: ``batch`` (#11-#14, red on ci/test, bisected), ``part1`` (#11, #12, landed),
    ``part2`` (#13, #14, testing), ``behind`` (#15, testing on top of part 2), ``flaky`` and ``flaky_part``
    (#21 alone, a settled flaky bisection of #21, #22), plus settled bisections without entries."""

    attempts: dict[str, int]


async def seed_bisection(engine: AsyncEngine) -> Bisecting:
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        repo = Repository(owner="acme", name="app", forge_id=1)
        session.add(repo)
        await session.flush()
        train = Train(repository_id=repo.id, branch="main")
        session.add(train)
        await session.flush()
        pulls = {}
        for number in (11, 12, 13, 14, 15, 21, 22):
            pulls[number] = PullRequest(
                repository_id=repo.id,
                number=number,
                title=f"Change {number}",
                author="alice",
                head_sha=f"{number % 10}" * 40,
                head_ref=f"change-{number}",
                base_ref="main",
                state="closed" if number in (11, 12, 21, 22) else "open",
                merged=number in (11, 12, 21, 22),
            )
        session.add_all(pulls.values())
        await session.flush()
        entries = {}
        for number, state in ((11, "merged"), (12, "merged"), (13, "testing"), (14, "testing"), (15, "testing")):
            entries[number] = Entry(
                train_id=train.id,
                pull_request_id=pulls[number].id,
                state=state,
                approved_sha=pulls[number].head_sha,
                approved_by="maint",
                trigger="comment",
                queued_at=ago(60 - number),
                finished_at=ago(5) if state == "merged" else None,
                reason="merged" if state == "merged" else None,
                merged_sha=f"{number % 10}" * 40 if state == "merged" else None,
            )
        for number in (21, 22):
            entries[number] = Entry(
                train_id=train.id,
                pull_request_id=pulls[number].id,
                state="merged",
                approved_sha=pulls[number].head_sha,
                approved_by="maint",
                trigger="comment",
                queued_at=ago(200),
                finished_at=ago(150),
                reason="merged",
                merged_sha="e" * 40,
            )
        session.add_all(entries.values())
        await session.flush()
        red = {"context": "ci/test", "state": "failure", "target_url": RUN, "description": "1 failed", "sha": "b" * 40}

        def attempt(state: str, minutes: float, **values: Any) -> Attempt:
            made = Attempt(
                train_id=train.id,
                state=state,
                created_at=ago(minutes),
                finished_at=None if state == "testing" else ago(minutes - 1),
                **{"base_sha": "0" * 40, **values},
            )
            session.add(made)
            return made

        flaky = attempt("failed", 190, reason="bisected", reason_detail={**red, "outcome": "flaky"})
        flaky_lint = attempt("failed", 180, reason="bisected", reason_detail={"context": "lint", "outcome": "flaky"})
        flaky_again = attempt("failed", 170, reason="bisected", reason_detail={**red, "outcome": "flaky"})
        culprit = attempt("failed", 160, reason="bisected", reason_detail={**red, "outcome": "culprit"})
        batch = attempt("failed", 40, reason="bisected", candidate_sha="b" * 40, reason_detail={**red, "base": "main"})
        await session.flush()
        flaky_part = attempt("done", 185, split_from=flaky.id, candidate_sha="e" * 40)
        part1 = attempt("done", 30, split_from=batch.id, candidate_sha="1" * 40)
        part2 = attempt(
            "testing", 4, split_from=batch.id, candidate_sha="2" * 40, deadline_at=NOW + timedelta(minutes=50)
        )
        await session.flush()
        behind = attempt("testing", 3, parent_id=part2.id, base_sha="2" * 40, candidate_sha="3" * 40)
        await session.flush()
        members = [
            (flaky, [21, 22]),
            (flaky_part, [22]),
            (batch, [11, 12, 13, 14]),
            (part1, [11, 12]),
            (part2, [13, 14]),
            (behind, [15]),
        ]
        for owner, numbers in members:
            for position, number in enumerate(numbers):
                session.add(
                    AttemptEntry(
                        attempt_id=owner.id,
                        entry_id=entries[number].id,
                        position=position,
                        head_sha=pulls[number].head_sha,
                    )
                )
        events = [
            (13, batch, "attempt_started", None, {"base": "0" * 40, "with": [11, 12, 13, 14]}, 40),
            (13, batch, "bisected", "checks_failed", {}, 31),
            (13, part2, "attempt_started", None, {"base": "1" * 40, "with": [13, 14]}, 30),
            (13, part2, "rebuilt", "base_moved", {}, 10),
            (21, flaky, "attempt_started", None, {"base": "0" * 40, "with": [21, 22]}, 190),
            (21, flaky, "bisected", "checks_failed", {}, 189),
            (21, flaky, "flaky", "flaky", {"context": "ci/test"}, 150),
        ]
        for number, owner, kind, reason, detail, minutes in events:
            session.add(
                EntryEvent(
                    entry_id=entries[number].id,
                    attempt_id=owner.id,
                    kind=kind,
                    reason=reason,
                    detail=detail,
                    at=ago(minutes),
                )
            )
        for sha, state in (("2" * 40, "pending"), ("3" * 40, "success")):
            session.add(
                CommitStatus(
                    repository_id=repo.id,
                    sha=sha,
                    context="ci/test",
                    state=state,
                    target_url=f"https://ci.example.org/{sha[:4]}",
                    updated_at=ago(1),
                )
            )
    named = {
        "batch": batch,
        "part1": part1,
        "part2": part2,
        "behind": behind,
        "flaky": flaky,
        "flaky_part": flaky_part,
        "culprit": culprit,
        "flaky_lint": flaky_lint,
        "flaky_again": flaky_again,
    }
    return Bisecting({name: made.id for name, made in named.items()})


@pytest.fixture
async def bisecting(engine: AsyncEngine) -> Bisecting:
    return await seed_bisection(engine)


async def api(client: Client, template: str, path: str) -> Any:
    response = await client.get(path)
    return spec.check(template, "GET", response.status, response.content_type, await response.read())


async def test_the_api_shows_the_chain_the_bisection_and_flaky_counts(client: Client, bisecting: Bisecting) -> None:
    ids = bisecting.attempts
    body = await api(client, "/api/v1/repos/{owner}/{repo}/trains", "/api/v1/repos/acme/app/trains")
    train = body["trains"][0]
    assert [attempt["id"] for attempt in train["attempts"]] == [ids["part2"], ids["behind"]]  # chain order
    assert train["running"] == train["attempts"][0]  # the old field: the chain's first attempt
    part, behind = train["attempts"]
    assert [pull["number"] for pull in part["pulls"]] == [13, 14]
    assert part["split_from"] == ids["batch"] and part["part"] == 2 and part["parent_id"] is None
    assert part["note"] == f"bisecting batch #{ids['batch']} (PRs #11, #12, #13, #14): part 2 of 2"
    bisection = part["bisection"]
    assert bisection["context"] == "ci/test" and bisection["target_url"] == RUN and bisection["outcome"] is None
    assert bisection["reason"] == "checks_failed"
    assert [(p["number"], [pull["number"] for pull in p["pulls"]], p["state"]) for p in bisection["parts"]] == [
        (1, [11, 12], "passed"),
        (2, [13, 14], "testing"),
    ]
    assert bisection["known"] == (
        "the batch failed: ci/test reported failure; part 1 (#11, #12) passed; part 2 (#13, #14) being tested"
    )
    assert behind["parent_id"] == ids["part2"] and behind["split_from"] is None and behind["note"] is None
    assert [check["state"] for check in behind["checks"]] == ["success"]
    assert train["flaky"] == {"ci/test": 2, "lint": 1}  # the culprit and the unsettled batch are not flaky
    recent = {entry["pull"]["number"]: entry["tested_in"] for entry in train["recent"]}
    assert recent[12]["attempt_id"] == ids["part1"] and recent[12]["split_from"] == ids["batch"]
    assert recent[12]["text"] == f"tested in batch #{ids['part1']} with #11, split from batch #{ids['batch']}"
    assert recent[22]["text"] == f"tested in batch #{ids['flaky_part']} alone, split from batch #{ids['flaky']}"
    attempts = await api(client, "/api/v1/repos/{owner}/{repo}/attempts", "/api/v1/repos/acme/app/attempts")
    by_id = {attempt["id"]: attempt for attempt in attempts["attempts"]}
    assert by_id[ids["batch"]]["reason"] == "bisected" and by_id[ids["batch"]]["outcome"] is None
    assert by_id[ids["flaky"]]["outcome"] == "flaky" and by_id[ids["culprit"]]["outcome"] == "culprit"
    assert by_id[ids["part1"]]["part"] == 1
    entries = await api(client, "/api/v1/repos/{owner}/{repo}/entries", "/api/v1/repos/acme/app/entries")
    assert {entry["pull"]["number"] for entry in entries["entries"] if entry["tested_in"]} == {11, 12, 21, 22}
    history = await api(client, "/api/v1/repos/{owner}/{repo}/pulls/{number}", "/api/v1/repos/acme/app/pulls/13")
    kinds = [event["kind"] for event in history["history"]["entries"][0]["events"]]
    assert kinds == ["attempt_started", "bisected", "attempt_started", "rebuilt"]
    await api(client, "/api/v1/repos/{owner}/{repo}/pulls/{number}", "/api/v1/repos/acme/app/pulls/21")


async def test_the_parts_a_batch_was_split_into_are_shown_as_recorded(
    client: Client, engine: AsyncEngine, bisecting: Bisecting
) -> None:
    """The machine records the parts on the bisected attempt (its first half PR by PR, then the second half):
    the views show those, not halves worked out again (the fixture's batch, recorded without parts, shows
    halves: a row written before parts were recorded)."""
    ids = bisecting.attempts
    async with AsyncSession(engine) as session, session.begin():
        batch = await session.get(Attempt, ids["batch"])
        assert batch is not None
        rows = (await session.execute(select(AttemptEntry).where(AttemptEntry.attempt_id == batch.id))).scalars()
        order = [row.entry_id for row in sorted(rows, key=lambda row: row.position)]
        batch.reason_detail = {**(batch.reason_detail or {}), "parts": [order[:1], order[1:2], order[2:]]}
    body = await api(client, "/api/v1/repos/{owner}/{repo}/trains", "/api/v1/repos/acme/app/trains")
    part = body["trains"][0]["attempts"][0]
    assert part["id"] == ids["part2"] and part["part"] == 3
    assert part["note"] == f"bisecting batch #{ids['batch']} (PRs #11, #12, #13, #14): part 3 of 3"
    assert [(p["number"], [pull["number"] for pull in p["pulls"]], p["state"]) for p in part["bisection"]["parts"]] == [
        (1, [11], "passed"),
        (2, [12], "passed"),
        (3, [13, 14], "testing"),
    ]


async def test_the_queue_page_shows_every_active_attempt_in_chain_order(client: Client, bisecting: Bisecting) -> None:
    ids = bisecting.attempts
    html = await page(client, "/queue/acme/app")
    shown = text_of(html)
    # The running block covers the whole chain (what the browser test reads), each attempt a card of its own.
    assert re.search(rf'data-testid="running" data-attempt="{ids["part2"]}" data-pulls="13 14 15"', html)
    cards = re.findall(r'data-testid="attempt" data-attempt="(\d+)" data-pulls="([\d ]+)"', html)
    assert cards == [(str(ids["part2"]), "13 14"), (str(ids["behind"]), "15")]
    assert f'data-split-from="{ids["batch"]}" data-part="2"' in html
    assert f"bisecting batch #{ids['batch']} (PRs #11, #12, #13, #14): part 2 of 2" in shown
    assert "part 1 (#11, #12) passed; part 2 (#13, #14) being tested" in shown
    assert f'<a href="{RUN}">the batch\'s failed run</a>' in html
    assert f"(the candidate of attempt {ids['part2']})" in shown
    assert "2 under test · window 4 of at most 4" in shown
    assert f"on #{ids['part2']} , the candidate before it" in shown
    assert "part 2 of 2" in shown  # the part's badge
    assert shown.index("#13 Change 13") < shown.index("#15 Change 15")
    # Recent outcomes: which batch each PR was tested in.
    assert f"tested in batch #{ids['part1']} with #12, split from batch #{ids['batch']}" in shown  # #11's line
    # Flaky failures per check context.
    assert re.findall(r'<li data-context="([^"]+)"><code>[^<]+</code> <strong>(\d+)</strong>', html) == [
        ("ci/test", "2"),
        ("lint", "1"),
    ]


async def test_a_pr_page_shows_the_bisection_events(client: Client, bisecting: Bisecting) -> None:
    ids = bisecting.attempts
    html = await page(client, "/queue/acme/app/pull/13")
    shown = text_of(html)
    batch = f"batch #{ids['batch']} (PRs #11, #12, #13, #14)"
    started = f"test started on 0000000000 in batch #{ids['batch']} with #11, #12, #14"
    bisected = f"{batch} failed: ci/test reported failure; bisecting it to find the PR at fault details"
    part = f"in batch #{ids['part2']} with #14 (bisecting {batch}: part 2 of 2)"
    rebuilt = "rebuilt on the new tip of the base branch"
    assert shown.index(started) < shown.index(bisected) < shown.index(part) < shown.index(rebuilt)
    assert f'<span>{bisected.removesuffix(" details")}</span> <a href="{RUN}">details</a>' in html
    flaky = text_of(await page(client, "/queue/acme/app/pull/21"))
    assert f"counted as a flaky failure of ci/test: batch #{ids['flaky']} failed, yet every part of it passed" in flaky
    merged = text_of(await page(client, "/queue/acme/app/pull/22"))
    assert f"tested in batch #{ids['flaky_part']} alone, split from batch #{ids['flaky']}" in merged


async def test_flaky_failures_are_a_metric_per_check_context(client: Client, bisecting: Bisecting) -> None:
    samples = await scrape(client)
    assert value(samples, "merge_bot_flaky_failures_total", **TRAIN, context="ci/test") == 2
    assert value(samples, "merge_bot_flaky_failures_total", **TRAIN, context="lint") == 1
    contexts = {dict(labels)["context"] for name, labels in samples if name == "merge_bot_flaky_failures_total"}
    assert contexts == {"ci/test", "lint"}  # the culprit and the unsettled batch are not counted


async def test_status_shows_the_chain_and_the_bisection(engine: AsyncEngine, bisecting: Bisecting) -> None:
    ids = bisecting.attempts
    async with views.reading(engine) as session:
        trains = await views.trains(session, views.Links("https://git.example.org"), NOW)
    console = Console(record=True, width=200, color_system=None)
    console.print(status.render(trains, NOW))
    out = console.export_text()
    first = f"attempt {ids['part2']} testing  #13 Change 13, #14 Change 14  · on the base tip 0000000000 · part 2 of 2"
    assert out.index(first) < out.index(f"└ attempt {ids['behind']} testing  #15 Change 15  · on #{ids['part2']}")
    assert f"bisecting batch #{ids['batch']} (PRs #11, #12, #13, #14): part 2 of 2" in out
    assert "part 1 (#11, #12) passed; part 2 (#13, #14) being tested" in out
    assert f"tested in batch #{ids['part1']} with #11, split from batch #{ids['batch']}" in out
    assert "Flaky checks" in out and "ci/test 2 flaky of 5 results (40%) · lint 1 flaky of 1 result (100%)" in out


def ref(number: int) -> views.PullRef:
    return views.PullRef("acme/app", number, "", "", "", "")


def test_the_words_of_a_bisection() -> None:
    parts = (views.Part(1, (ref(1), ref(2)), "failed"), views.Part(2, (ref(3),), "waiting"))
    bisection = views.Bisection(7, (ref(1), ref(2), ref(3)), "ci_timeout", "", "", "culprit", parts, "")
    assert views.known_text(bisection) == (
        "the batch failed: required checks did not report before the deadline; part 1 (#1, #2) failed; "
        "part 2 (#3) back in line; settled: the PR at fault was found and rejected"
    )
    assert views.part_note(bisection, 1) == "bisecting batch #7 (PRs #1, #2, #3): part 1 of 2"
    assert bisection.part_of(3) == parts[1] and bisection.part_of(9) is None
    alone = views.Batch(5, (ref(4),), None, None)
    assert views.batch_text(alone, 4) is None  # tested alone, not in a bisection: nothing to add
    assert views.batch_text(views.Batch(5, (ref(4), ref(6)), None, None), 4) == "tested in batch #5 with #6"
    assert views.check_name("") == "(a deadline)" and views.check_name("ci/test") == "ci/test"
    assert views.reason_text("chain_broken", None) == "the attempt it was built on was rebuilt"
