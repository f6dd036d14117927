"""The speculative chain as operators see it: the active attempts in chain order (each on the base tip or on
the candidate before it, indented by depth), where the base is, the window; a timeline of the last hours
(one bar per attempt, one mark per push); and flaky failures of every kind — a bisected batch whose parts
passed, a PR red alone that passed when re-tested on the same candidate, a red attempt landed optimistically
— as a rate per check context. On the queue page, in the JSON API (against the OpenAPI file), in
``merge-bot status`` and in ``/metrics``. Built from database rows made here, as the gate writes them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot import status
from bot.app import create_app
from bot.config import Settings
from bot.db.models import Attempt, AttemptEntry, CommitStatus, Entry, EntryEvent, PullRequest, Repository, Train
from bot.gate.service import Gate
from bot.web import timeline, views
from tests.clocks import StillClock
from tests.web import spec
from tests.web.conftest import NOW, Client, ago, web_settings
from tests.web.test_metrics import TRAIN, scrape, value
from tests.web.test_pages import page, text_of

RED_RUN = "https://ci.example.org/runs/77"


def sha(tag: str) -> str:
    return (tag * 40)[:40]


P0, P1, P2, P3 = sha("0a"), sha("1a"), sha("2a"), sha("3a")  # the pushes that moved the base
C4, CB1, CB2 = sha("4c"), sha("b1"), sha("b2")  # candidates


@dataclass
class Chain:
    """Attempt ids by name (see :func:`seed_chain`) and the train's id."""

    train_id: int
    ids: dict[str, int]


async def seed_chain(engine: AsyncEngine) -> Chain:
    """acme/app → main, window 2. History: ``old`` landed 8 h ago (outside the timeline); ``a1`` (#31, #32)
    landed alone; ``a2`` (#33, red on ci/test) and ``a3`` (#34, on it, green) landed by one push, ``a2``
    optimistically; ``a4`` (#35) red on ci/test, re-tested as ``a5`` on the same candidate, green and landed (a
    flaky re-test); ``a6`` (#36) red on lint, re-tested as ``a7``, red again (confirmed); ``a8`` a bisected
    batch whose parts all passed (flaky on ci/test). The chain now: ``b1`` (#37) on the base tip, ``b2`` (#38,
    a re-test of ``a9``, red on ci/test) on ``b1``, ``b3`` (#39) building on ``b2``."""
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        repo = Repository(owner="acme", name="app", forge_id=1)
        session.add(repo)
        await session.flush()
        chosen = {"batch": 3, "window": 3, "reason": "drains 5 PRs in 2.1 cycles"}  # kept by an adaptive gate
        train = Train(repository_id=repo.id, branch="main", window=2, adaptive=chosen)
        session.add(train)
        await session.flush()
        numbers = range(30, 40)
        merged = {30, 31, 32, 33, 34, 35}
        pulls = {
            n: PullRequest(
                repository_id=repo.id,
                number=n,
                title=f"Change {n}",
                author="alice",
                head_sha=sha(str(n)),
                head_ref=f"change-{n}",
                base_ref="main",
                state="closed" if n in merged else "open",
                merged=n in merged,
            )
            for n in numbers
        }
        session.add_all(pulls.values())
        await session.flush()
        entries = {
            n: Entry(
                train_id=train.id,
                pull_request_id=pulls[n].id,
                state="merged" if n in merged else "failed" if n == 36 else "testing",
                approved_sha=pulls[n].head_sha,
                approved_by="maint",
                trigger="comment",
                queued_at=ago(600 if n == 30 else 120),
                finished_at=ago(25) if n in merged or n == 36 else None,
                reason="merged" if n in merged else "checks_failed" if n == 36 else None,
            )
            for n in numbers
        }
        session.add_all(entries.values())
        await session.flush()
        red = {"context": "ci/test", "state": "failure", "target_url": RED_RUN, "description": "1 failed"}
        lint = {"context": "lint", "state": "failure", "target_url": "https://ci.example.org/lint", "description": ""}

        def attempt(state: str, started: float, finished: float | None, **values: Any) -> Attempt:
            made = Attempt(
                train_id=train.id,
                state=state,
                created_at=ago(started),
                finished_at=ago(finished) if finished is not None else None,
                **{"base_sha": P0, **values},
            )
            session.add(made)
            return made

        made: dict[str, Attempt] = {}
        made["old"] = attempt("done", 490, 480, candidate_sha=sha("0c"), reason_detail={"push": P0})
        made["a8"] = attempt("failed", 200, 199, reason="bisected", reason_detail={**red, "outcome": "flaky"})
        made["a1"] = attempt("done", 100, 90, candidate_sha=sha("1c"), reason_detail={"push": P1})
        await session.flush()
        optimistic = {"optimistic": True, "context": "ci/test", "outcome": "flaky", "push": P2}
        made["a2"] = attempt("done", 80, 60, base_sha=P1, candidate_sha=sha("2c"), reason_detail=optimistic)
        await session.flush()
        made["a3"] = attempt(
            "done", 79, 60, base_sha=sha("2c"), parent_id=made["a2"].id, candidate_sha=P2, reason_detail={"push": P2}
        )
        retried = {**red, "sha": C4, "outcome": "flaky"}
        made["a4"] = attempt(
            "abandoned", 50, 45, base_sha=P2, candidate_sha=C4, reason="retried", reason_detail=retried
        )
        await session.flush()
        made["a5"] = attempt(  # a re-test keeps the red one's created_at: the committer date of the same commit
            "done", 50, 35, base_sha=P2, candidate_sha=C4, retry_of=made["a4"].id, retries=1, reason_detail={"push": P3}
        )
        confirmed = {**lint, "sha": sha("6c"), "outcome": "confirmed"}
        made["a6"] = attempt(
            "abandoned", 30, 28, base_sha=P3, candidate_sha=sha("6c"), reason="retried", reason_detail=confirmed
        )
        await session.flush()
        made["a7"] = attempt(
            "failed",
            28,
            25,
            base_sha=P3,
            candidate_sha=sha("6c"),
            retry_of=made["a6"].id,
            retries=1,
            reason="checks_failed",
            reason_detail=lint,
        )
        made["b1"] = attempt(
            "testing", 10, None, base_sha=P3, candidate_sha=CB1, deadline_at=NOW + timedelta(minutes=50)
        )
        await session.flush()
        made["a9"] = attempt(
            "abandoned",
            9,
            8,
            base_sha=CB1,
            parent_id=made["b1"].id,
            candidate_sha=CB2,
            reason="retried",
            reason_detail={**red, "sha": CB2},
        )
        await session.flush()
        made["b2"] = attempt(
            "testing",
            9,
            None,
            base_sha=CB1,
            parent_id=made["b1"].id,
            candidate_sha=CB2,
            retry_of=made["a9"].id,
            retries=1,
        )
        await session.flush()
        made["b3"] = attempt("building", 1, None, base_sha=CB2, parent_id=made["b2"].id)
        await session.flush()
        carried = {
            "old": [30],
            "a1": [31, 32],
            "a2": [33],
            "a3": [34],
            "a4": [35],
            "a5": [35],
            "a6": [36],
            "a7": [36],
            "b1": [37],
            "a9": [38],
            "b2": [38],
            "b3": [39],
        }
        for name, members in carried.items():
            for position, n in enumerate(members):
                session.add(
                    AttemptEntry(
                        attempt_id=made[name].id, entry_id=entries[n].id, position=position, head_sha=pulls[n].head_sha
                    )
                )
        session.add(
            EntryEvent(
                entry_id=entries[38].id,
                attempt_id=made["a9"].id,
                kind="retried",
                reason="retried",
                detail={"context": "ci/test", "retry": 1},
                at=ago(8),
            )
        )
        statuses = [
            (C4, "ci/test", "success", "https://ci.example.org/runs/45"),  # a5's re-test (a4 was red on it)
            (CB1, "ci/test", "success", "https://ci.example.org/runs/b1"),
            (CB1, "lint", "pending", "https://ci.example.org/lint/b1"),
            (CB1, "merge-bot", "pending", "https://bot.example.org/"),  # the bot's own: never a result
            (CB2, "ci/test", "failure", RED_RUN),  # a9's red, and what b2 re-tests
        ]
        for at, context, state, url in statuses:
            session.add(
                CommitStatus(
                    repository_id=repo.id, sha=at, context=context, state=state, target_url=url, updated_at=ago(1)
                )
            )
    return Chain(train.id, {name: attempt.id for name, attempt in made.items()})


@pytest.fixture
async def chain(engine: AsyncEngine) -> Chain:
    return await seed_chain(engine)


def timeline_svg(html: str) -> str:
    match = re.search(r'<figure class="timeline-chart" data-testid="timeline">.*?</svg>', html, re.S)
    assert match, "no timeline"
    return match.group(0)


async def test_the_queue_page_draws_the_chain_in_order_with_its_bases(client: Client, chain: Chain) -> None:
    ids = chain.ids
    html = await page(client, "/queue/acme/app")
    shown = text_of(html)
    cards = re.findall(r'data-testid="attempt" data-attempt="(\d+)" data-pulls="[\d ]*" data-depth="(\d+)"', html)
    assert cards == [(str(ids["b1"]), "0"), (str(ids["b2"]), "1"), (str(ids["b3"]), "2")]
    assert re.search(rf'data-testid="running" data-attempt="{ids["b1"]}" data-pulls="37 38 39"', html)
    assert "3 under test · window 2 of at most 4" in shown  # the train's window; max_parallel's default
    assert f"base main is at {P3[:10]} · moved there by the queue 35 min ago" in shown
    ons = [text_of(on) for on in re.findall(r'<span class="on" data-testid="on">(.*?)</span>', html)]
    assert ons == [
        f"on the base tip {P3[:10]}",
        f"on #{ids['b1']} , the candidate before it",
        f"on #{ids['b2']} , the candidate before it",
    ]
    assert f'<a href="#attempt-{ids["b1"]}">#{ids["b1"]}</a>' in html  # the base links to the attempt it is
    assert f'id="attempt-{ids["b1"]}"' in html
    assert f"re-test 1 of the candidate of attempt {ids['a9']}, red on ci/test" in shown
    assert f'data-retry-of="{ids["a9"]}"' in html
    assert f'<a href="{RED_RUN}">ci/test</a> <strong>failure</strong>' in html  # b2's check, with its run
    assert '<a href="/queue/acme/app/pull/38">#38</a> Change 38' in html
    # Each active attempt's bar starts at its start, on the chain's axis (b1 first, at 0).
    spans = re.findall(r'<rect class="run state-(\w+)" x="([\d.]+)" y="0.5" width="([\d.]+)"', html)
    assert [(state, float(x)) for state, x, _ in spans] == [("testing", 0.0), ("testing", 20.0), ("building", 90.0)]


async def test_the_timeline_has_one_bar_per_recent_attempt_and_one_mark_per_push(client: Client, chain: Chain) -> None:
    ids = chain.ids
    html = await page(client, "/queue/acme/app")
    svg = timeline_svg(html)
    drawing = ElementTree.fromstring(svg[svg.index("<svg") :])  # well-formed, so any SVG reader can draw it
    assert drawing.get("role") == "img" and drawing.find("{*}title") is not None
    bars = re.findall(r'<g class="row (\w+)" data-attempt="(\d+)">', svg)
    recent = ["a8", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "b1", "a9", "b2", "b3"]  # oldest first; not "old"
    assert [int(attempt) for _, attempt in bars] == [ids[name] for name in recent]
    assert svg.count("<rect") == len(recent)  # one rect per attempt, nothing else drawn as one
    outcomes = {int(attempt): kind for kind, attempt in bars}
    assert outcomes[ids["a1"]] == "landed" and outcomes[ids["a2"]] == "optimistic"
    assert outcomes[ids["a4"]] == "retried" and outcomes[ids["a7"]] == "failed"
    assert outcomes[ids["a8"]] == "bisected" and outcomes[ids["b1"]] == outcomes[ids["b3"]] == "running"
    marks = re.findall(r'<g class="landing" data-push="([0-9a-f]{40})" data-attempts="([\d ]+)">', svg)
    assert marks == [(P1, str(ids["a1"])), (P2, f"{ids['a2']} {ids['a3']}"), (P3, str(ids["a5"]))]
    assert "12 attempts · 3 landings" in text_of(html)
    assert f"pushed {P2[:10]} at 11:00:00 UTC: 2 attempts (#33, #34)" in svg
    # The same in words, for readers without the picture.
    table = html[html.index('<details class="timeline-table">') :]
    rows = re.findall(r'<tr data-attempt="(\d+)">', table)
    assert [int(row) for row in rows] == [ids[name] for name in recent]
    assert "landed optimistically (a green candidate behind it landed it): flaky" in text_of(table)


async def test_flake_rates_count_every_kind_out_of_the_candidate_results(client: Client, chain: Chain) -> None:
    html = await page(client, "/queue/acme/app")
    flaky = re.findall(
        r'<li data-context="([^"]+)"><code>[^<]+</code> <strong>(\d+)</strong> <span class="rate">([^<]+)', html
    )
    # ci/test: a2 (optimistic), a4 (re-test), a8 (bisection) flaky; results a2, a4, a5, a8, a9, b1, b2.
    # lint: a6 and a7 red (confirmed, not flaky); b1's lint is pending, not a result yet.
    assert flaky == [("ci/test", "3", "3 flaky of 7 results (43%)"), ("lint", "0", "0 flaky of 2 results (0%)")]
    assert "(1 in bisected batches, 1 on re-tests, 1 landed optimistically)" in text_of(html)
    assert "merge-bot" not in [context for context, _, _ in flaky]


async def test_the_api_lists_the_chain_in_order_with_its_window_and_flake_rates(client: Client, chain: Chain) -> None:
    ids = chain.ids
    response = await client.get("/api/v1/repos/acme/app/trains")
    body = spec.check(
        "/api/v1/repos/{owner}/{repo}/trains", "GET", response.status, "application/json", await response.read()
    )
    train = body["trains"][0]
    assert [a["id"] for a in train["attempts"]] == [ids["b1"], ids["b2"], ids["b3"]]
    assert [a["parent_id"] for a in train["attempts"]] == [None, ids["b1"], ids["b2"]]
    assert [a["depth"] for a in train["attempts"]] == [0, 1, 2]
    assert [a["base_sha"] for a in train["attempts"]] == [P3, CB1, CB2]
    assert [[p["number"] for p in a["pulls"]] for a in train["attempts"]] == [[37], [38], [39]]
    assert all(len(a["entry_ids"]) == 1 for a in train["attempts"])
    b2 = train["attempts"][1]
    assert b2["retry_of"] == ids["a9"] and b2["retries"] == 1
    assert b2["retry_note"] == f"re-test 1 of the candidate of attempt {ids['a9']}, red on ci/test"
    # A re-test keeps the red attempt's created_at (the same commit); it started when that one ended.
    assert (b2["created_at"], b2["started_at"]) == (ago(9).isoformat(), ago(8).isoformat())
    assert train["attempts"][0]["started_at"] == train["attempts"][0]["created_at"]
    assert [(c["context"], c["state"]) for c in b2["checks"]] == [("ci/test", "failure")]
    assert (train["window"], train["max_parallel"]) == (2, 4)
    assert (train["base_sha"], train["landed_sha"], train["landed_at"]) == (P3, P3, ago(35).isoformat())
    assert train["flaky"] == {"ci/test": 3}
    assert train["flakes"] == [
        {"context": "ci/test", "flakes": 3, "results": 7, "bisection": 1, "retry": 1, "optimistic": 1},
        {"context": "lint", "flakes": 0, "results": 2, "bisection": 0, "retry": 0, "optimistic": 0},
    ]
    response = await client.get("/api/v1/repos/acme/app/attempts?limit=50")
    listed = spec.check(
        "/api/v1/repos/{owner}/{repo}/attempts", "GET", response.status, "application/json", await response.read()
    )
    by_id = {a["id"]: a for a in listed["attempts"]}
    assert by_id[ids["a2"]]["optimistic"] is True and by_id[ids["a2"]]["outcome"] == "flaky"
    assert by_id[ids["a2"]]["landed_sha"] == by_id[ids["a3"]]["landed_sha"] == P2  # one push landed both
    assert by_id[ids["a5"]]["retry_of"] == ids["a4"] and by_id[ids["a5"]]["landed_sha"] == P3
    assert by_id[ids["a4"]]["outcome"] == "flaky" and by_id[ids["a6"]]["outcome"] == "confirmed"
    assert by_id[ids["a1"]]["optimistic"] is False and by_id[ids["b1"]]["landed_sha"] is None
    assert all(a["depth"] is None for a in listed["attempts"])  # a depth belongs to a train's chain


@asynccontextmanager
async def _at(url: str) -> AsyncIterator[str]:
    yield url


async def test_merge_bot_status_prints_the_chain_one_line_per_attempt(
    database_url: str, chain: Chain, tmp_path: Path
) -> None:
    ids = chain.ids
    settings = web_settings(tmp_path, MERGE_BOT_MAX_PARALLEL="3")
    console = Console(record=True, width=200, color_system=None)
    code = await status.show(settings, lambda _: _at(database_url), "acme/app", as_json=False, console=console)
    assert code == 0
    out = console.export_text()
    lines = [line.strip("│ ").rstrip() for line in out.splitlines()]
    assert "Chain: 3 under test · window 2 of at most 3 · base main at " + P3[:10] + " (moved there by the queue" in out
    chain_lines = [line for line in lines if re.match(r"(└ )?attempt \d+ ", line.lstrip())]
    assert [re.search(r"attempt (\d+)", line).group(1) for line in chain_lines] == [  # type: ignore[union-attr]
        str(ids["b1"]),
        str(ids["b2"]),
        str(ids["b3"]),
    ]
    raw = {
        ids[name]: next(line for line in out.splitlines() if f"attempt {ids[name]} " in line)
        for name in ("b1", "b2", "b3")
    }
    indent = {attempt: len(line.split("attempt")[0].lstrip("│")) for attempt, line in raw.items()}
    assert indent[ids["b1"]] < indent[ids["b2"]] < indent[ids["b3"]]  # indented by depth
    assert f"#37 Change 37  · on the base tip {P3[:10]}" in raw[ids["b1"]]
    assert f"#38 Change 38  · on #{ids['b1']} · re-test 1" in raw[ids["b2"]]
    assert f"#39 Change 39  · on #{ids['b2']}" in raw[ids["b3"]]
    assert f"re-test 1 of the candidate of attempt {ids['a9']}, red on ci/test" in out
    assert "ci/test 3 flaky of 7 results (43%) · lint 0 flaky of 2 results (0%)" in out


async def test_the_chain_in_metrics(client: Client, chain: Chain) -> None:
    samples = await scrape(client)
    assert value(samples, "merge_bot_candidates_under_test", **TRAIN) == 2  # b3 is still building
    assert value(samples, "merge_bot_window", **TRAIN) == 2
    assert value(samples, "merge_bot_max_parallel", **TRAIN) == 4
    # Four pushes (old, a1, a2 with a3, a5) landed five attempts.
    assert value(samples, "merge_bot_attempts_per_push_count", **TRAIN) == 4
    assert value(samples, "merge_bot_attempts_per_push_sum", **TRAIN) == 5
    assert value(samples, "merge_bot_attempts_per_push_bucket", **TRAIN, le="1.0") == 3
    assert value(samples, "merge_bot_attempts_per_push_bucket", **TRAIN, le="2.0") == 4
    assert value(samples, "merge_bot_optimistic_landings_total", **TRAIN) == 1
    # CI runs per merged PR: 11 candidates pushed (a8 and b3 have none), 6 PRs merged.
    assert value(samples, "merge_bot_candidate_runs_total", **TRAIN) == 11
    assert value(samples, "merge_bot_merges_total", **TRAIN) == 6
    assert value(samples, "merge_bot_bisections_total", **TRAIN) == 1
    assert value(samples, "merge_bot_flaky_failures_total", **TRAIN, context="ci/test") == 3  # every kind
    for kind in ("bisection", "retry", "optimistic"):
        assert value(samples, "merge_bot_flakes_total", **TRAIN, context="ci/test", kind=kind) == 1
    contexts = {dict(labels)["context"] for name, labels in samples if name == "merge_bot_flakes_total"}
    assert contexts == {"ci/test"}  # lint's re-test was red again: confirmed, not flaky


async def test_a_pr_page_tells_its_re_test(client: Client, chain: Chain) -> None:
    shown = text_of(await page(client, "/queue/acme/app/pull/38"))
    assert "ci/test was red: tested again on the same candidate (re-test 1)" in shown
    assert views.reason_text("retried", None) == "red alone: tested again on the same candidate"


async def test_with_adaptive_the_window_is_the_gates_choice_and_says_why(
    aiohttp_client: Any, engine: AsyncEngine, chain: Chain, tmp_path: Path
) -> None:
    settings = web_settings(tmp_path, MERGE_BOT_ADAPTIVE="true")
    adaptive: Client = await aiohttp_client(create_app(settings, engine=engine, clock=StillClock(NOW)))
    shown = text_of(await page(adaptive, "/queue/acme/app"))
    assert "3 under test · window 3 of at most 4" in shown  # the choice, not the train's window rule
    assert "Adaptive: batches of up to 3, window 3 — drains 5 PRs in 2.1 cycles" in shown
    response = await adaptive.get("/api/v1/trains")
    body = spec.check("/api/v1/trains", "GET", response.status, "application/json", await response.read())
    assert body["trains"][0]["window"] == 3
    assert body["trains"][0]["adaptive"] == {"batch": 3, "window": 3, "reason": "drains 5 PRs in 2.1 cycles"}
    assert value(await scrape(adaptive), "merge_bot_window", **TRAIN) == 3


async def test_without_adaptive_a_kept_choice_is_not_shown(client: Client, chain: Chain) -> None:
    assert "Adaptive:" not in text_of(await page(client, "/queue/acme/app"))
    body = await (await client.get("/api/v1/trains")).json()
    assert body["trains"][0]["adaptive"] is None and body["trains"][0]["window"] == 2


@pytest.mark.parametrize("strategy", ["staging", "pr-branch"])
def test_the_window_shown_is_the_one_the_gate_works_with(tmp_path: Path, strategy: str) -> None:
    settings: Settings = web_settings(
        tmp_path,
        MERGE_BOT_STRATEGY=strategy,
        MERGE_BOT_MAX_PARALLEL="6",
        MERGE_BOT_WINDOW="3",
        MERGE_BOT_OPTIMISTIC="1",
    )
    gate = Gate.__new__(Gate)  # the policy is a function of the settings the gate works with, nothing else
    gate.settings = settings
    assert views.policy(settings) == gate.policy()
    assert views.links(settings).policy.depth(None) == (3 if strategy == "staging" else 1)


def test_the_timeline_clips_what_started_before_it_and_keeps_short_attempts_visible() -> None:
    def row(attempt_id: int, started: float, finished: float | None, state: str = "done") -> views.AttemptRow:
        return views.AttemptRow(
            id=attempt_id,
            branch="main",
            state=state,
            strategy="staging",
            base_sha=P0,
            candidate_sha=None,
            ref=None,
            pulls=(),
            checks=(),
            created_at=ago(started),
            deadline_at=None,
            finished_at=ago(finished) if finished is not None else None,
            seconds_left=None,
            reason=None,
            parent_id=None,
            split_from=None,
            part=None,
            bisection=None,
            note=None,
            outcome=None,
            entry_ids=(),
            retry_of=None,
            retries=0,
            retry_note=None,
            depth=None,
            landed_sha=P1 if state == "done" else None,
            optimistic=False,
            started_at=ago(started),
        )

    drawn = timeline.timeline([row(1, 420, 300), row(2, 30, 29.99), row(3, 500, 400), row(4, 5, None, "testing")], NOW)
    assert [bar.attempt_id for bar in drawn.bars] == [1, 2, 4]  # 3 ended before the six hours began
    first, short, running = drawn.bars
    assert first.clipped and first.x == drawn.axis_left
    assert short.width == timeline.MIN_BAR
    assert running.x + running.width == drawn.axis_right  # still running: up to now
    assert [landing.attempt_ids for landing in drawn.landings] == [(1, 2)]  # one push, one mark
    assert [tick.label for tick in drawn.ticks][::3] == ["6 h ago", "3 h ago", "now"]
