"""Queue drain benchmark: N PRs queued at once, CI of a fixed duration T, the bot against the Gitea simulator.

What it measures
    N independent PRs (each adds its own file, so each is green and all merge) get a ``/merge`` comment
    from a user with write access, all at once. The bot (staging strategy: candidate on
    ``merge-bot/main/<attempt>``, CI there, fast-forward of main) tests them one after the other.

    drain              first ``/merge`` posted → last entry marked merged (the entry's ``finished_at``).
    overhead per PR    (drain - N·T) / N. N·T is the floor of serial testing: what is left is what the bot
                       and the simulator add per PR. Goal: < 0.3 s.
    status → base      per merged candidate, from the simulator's own log: CI's final status on the
                       candidate's SHA (``ci`` entry, phase ``done``) → the push that moved
                       ``refs/heads/main`` to that SHA. p50, p99 (nearest rank: with N < 100 it is the
                       maximum), max. Goal: p99 < 1 s.

    The same run measures a baseline: the simulator alone (no bot) doing the round trip the bot drives for
    each PR: a client pushes a branch → CI runs → its status webhook reaches a minimal receiver → a direct
    merge through the API (``Do=fast-forward-only``). (round trip - T) is the simulator's floor per PR,
    so the report can split the overhead into simulator and bot. The baseline runs before the bot starts, on
    a repository of its own with the same CI.

    It also breaks each PR's cycle into phases (base moved → FinishMerged decided → staging ref deleted →
    next StartAttempt decided → next candidate pushed → CI final status → status webhook delivered to the
    bot → MergeAttempt decided → base moved), using the simulator's log, the bot's ``webhook_deliveries``
    rows and its ``gate.decision`` log lines; counts the bot's forge calls and the webhooks it received
    per PR; and measures CPU seconds per PR (this process: bot + simulator; child processes: git and CI),
    against the same for a baseline round trip. The machine is shared: wall-clock figures move with its
    load (recorded in the report), CPU per PR much less; ``--runs K`` repeats the whole measurement and
    judges the goals on the medians.

The set-up
    * PostgreSQL: an embedded server (``bot.embedded_pg``) in a temporary directory, or ``--database-url``
      (a server's maintenance database; a fresh database is created there and dropped afterwards).
      Either way the database is created and migrated (Alembic) by this run.
    * The simulator runs in-process (``gitea_sim.testing.running_sim``) on 127.0.0.1, the bot's app
      (``bot.app.create_app``) on 127.0.0.1 in the same event loop, as in the end-to-end tests.
    * CI: the simulator's CI with ``delay_s = T`` running a fast real script (``test -f app.txt``). The
      delay is an ``asyncio.sleep`` inside the simulator: exactly T, no extra process per run on a 2-CPU
      machine, while the checkout and the script still run for real on the candidate, so a green status
      still means the commit was tested. (A script sleeping T would cost the same checkout plus a
      process that does nothing.) The CI's cost beyond T (clone + checkout + script) is reported.
      CI runs on every branch, as a repository's CI usually does (PR branches, staging refs and main).
    * Bot settings as in the end-to-end tests (staging strategy), except ``MERGE_BOT_GATE_POLL_SECONDS``
      = 5 (the default, ``--gate-poll-seconds``): long enough that a merge well under 1 s after the status
      can only have been started by the status webhook, not by a poll tick (the report counts decisions
      made more than 0.5 s after the webhook); and the reconciler and reaper at their production defaults.

Run it (from the repository root, with the venv active)::

    python bench/queue.py                                  # 20 PRs, T = 1.0 s
    python bench/queue.py --prs 10 --ci-seconds 1
    python bench/queue.py --prs 20 --ci-seconds 0.5 --runs 3 --json
    python bench/queue.py --database-url postgresql://user@127.0.0.1/postgres
    python bench/queue.py --bot-log /tmp/bot.jsonl --timeline /tmp/drain.jsonl   # keep the logs to dig in

It stops by itself (every wait has a deadline), stops the bot, the simulator and the embedded PostgreSQL
and removes its temporary directory, also on errors. Only 127.0.0.1 is ever contacted. Exit status 0 when
every PR merged (whether or not the goals were met; the report says), 1 when the run itself failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as ``python bench/queue.py``, this directory is first on sys.path, where this file would shadow the
# standard library's ``queue`` (asyncio's thread pool imports it): move it to the end, where the shared
# ``harness`` module is still found (bench/harness.py says more).
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import dataclasses
import json
import math
import os
import re
import resource
import secrets
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TextIO

from aiohttp import web
from harness import BenchError, checkout_commit, eventually, fresh_database, percentile, progress, serving
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import logs
from bot.app import create_app
from bot.config import Settings, load_settings
from bot.db.models import DeliveryState, Entry, PullRequest, WebhookDelivery
from bot.db.session import make_engine
from gitea_sim.testing import SimApiError, SimHandle, SimUser, free_port, running_sim

CONTEXT = "ci/test"
CI_SCRIPT = "#!/bin/sh\nset -e\ntest -f app.txt\n"
GOAL_OVERHEAD_S = 0.3
GOAL_P99_S = 1.0
FINAL_STATES = ("merged", "failed", "cancelled")


# -- numbers -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    n: int
    p50: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread | None:
        sample = list(values)
        if not sample:
            return None
        return cls(len(sample), percentile(sample, 50), percentile(sample, 99), max(sample), statistics.fmean(sample))


# -- the simulator's log -----------------------------------------------------------------------------


@dataclass
class SimLog:
    """The simulator's log entries of one repository, indexed for the questions this benchmark asks."""

    pushes: list[dict[str, Any]] = field(default_factory=list)
    ci: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # to the bot's hook, with the payload
    api: list[dict[str, Any]] = field(default_factory=list)  # the bot's API calls and git requests
    entries: list[dict[str, Any]] = field(default_factory=list)  # everything read, for --timeline

    @classmethod
    async def read(cls, sim: SimHandle, repo: str, since: int, hook_url: str = "", bot_login: str = "") -> SimLog:
        found = cls()
        found.entries = await sim.log(since=since)
        for item in found.entries:
            kind = item["kind"]
            if kind == "push" and item.get("repo") == repo:
                found.pushes.append(item)
            elif kind == "ci" and item.get("repo") == repo:
                found.ci.append(item)
            elif kind == "delivery" and hook_url and item.get("url") == hook_url:
                sent = sim.sim.webhooks.history.get(item["uuid"])  # the body, from the in-process simulator
                payload = json.loads(sent.body) if sent is not None else {}
                found.deliveries.append({**item, "started": item["time"] - item["duration_ms"] / 1000, "body": payload})
            elif bot_login and ((kind == "api" and item.get("user") == bot_login) or kind == "git"):
                # git requests carry no user in the log; while the queue drains only the bot uses git.
                found.api.append(item)
        return found

    def push_of(self, ref: str, sha: str) -> float | None:
        return next((p["time"] for p in self.pushes if p["ref"] == ref and p["after"] == sha), None)

    def first_push_to(self, prefix: str, sha: str) -> float | None:
        return next((p["time"] for p in self.pushes if p["ref"].startswith(prefix) and p["after"] == sha), None)

    def ci_run(self, sha: str, before: float) -> tuple[float, float] | None:
        """(start, final status) of the last CI run on ``sha`` that finished by ``before``."""
        done = [c for c in self.ci if c["sha"] == sha and c["phase"] == "done" and c["time"] <= before]
        if not done:
            return None
        final = done[-1]
        start = next((c["time"] for c in self.ci if c.get("run") == final.get("run") and c["phase"] == "start"), None)
        return (start if start is not None else final["time"]), final["time"]

    def status_delivery(self, sha: str, after: float) -> dict[str, Any] | None:
        return next(
            (
                d
                for d in self.deliveries
                if d.get("event_type") == "status"
                and d["body"].get("sha") == sha
                and d["body"].get("context") == CONTEXT
                and d["body"].get("state") in ("success", "failure", "error")
                and d["time"] >= after
            ),
            None,
        )


# -- the baseline: the simulator alone ---------------------------------------------------------------


class StatusReceiver:
    """The smallest webhook consumer: notes when CI's final status for a SHA arrives."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self._waiters: dict[str, asyncio.Future[float]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (
            request.headers.get("X-Gitea-Event-Type") == "status"
            and body.get("context") == CONTEXT
            and body.get("state") == "success"
        ):
            sha, now = str(body["sha"]), time.time()
            self.arrived.setdefault(sha, now)
            waiter = self._waiters.pop(sha, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(now)
        return web.Response(status=204)

    async def wait(self, sha: str, within: float) -> float:
        if sha in self.arrived:
            return self.arrived[sha]
        waiter = self._waiters.setdefault(sha, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(waiter, within)
        except TimeoutError:
            raise BenchError(f"no green status webhook for {sha[:10]} within {within:.0f} s") from None


def cpu_now() -> tuple[float, float]:
    """(this process's CPU seconds, its waited-for children's CPU seconds)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time(), children.ru_utime + children.ru_stime


def cpu_since(before: tuple[float, float]) -> tuple[float, float]:
    now = cpu_now()
    return now[0] - before[0], now[1] - before[1]


@dataclass(frozen=True)
class RoundTrip:
    client_push_s: float  # fetch, commit and git push of a branch, as the client sees it
    ci_s: float  # branch ref updated → CI's final status (T + the simulator's CI)
    status_to_hook_s: float  # final status → status webhook received
    hook_to_base_s: float  # webhook received → base moved by the merge API call
    status_to_base_s: float
    total_s: float  # push started → base moved
    cpu_process_s: float  # CPU of this process (simulator + receiver, Python) during the round trip
    cpu_children_s: float  # CPU of child processes (git, the CI script) during the round trip


async def merge_when_mergeable(sim: SimHandle, repo: str, number: int, user: SimUser, sha: str, within: float) -> None:
    """POST merge (fast-forward-only, fenced on ``sha``); a 405 while the PR's mergeability is still being
    checked is retried until ``within`` seconds have passed."""
    deadline = time.monotonic() + within
    while True:
        status = await sim.merge(repo, number, user, do="fast-forward-only", head_commit_id=sha)
        if status == 200:
            return
        if status != 405 or time.monotonic() > deadline:
            raise BenchError(f"direct merge of #{number} answered {status}")
        await asyncio.sleep(0.01)


async def measure_baseline(
    sim: SimHandle, owner: SimUser, dev: SimUser, ci_seconds: float, runs: int
) -> list[RoundTrip]:
    repo = await make_repo(sim, owner, "direct", {dev.login: "write"}, ci_seconds)
    await sim.api("PATCH", f"/repos/{repo}", token=owner.token, json={"allow_fast_forward_only_merge": True})
    receiver = StatusReceiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    port = free_port()
    trips: list[RoundTrip] = []
    async with serving(app, port):
        await sim.add_hook(repo, f"http://127.0.0.1:{port}/hook", secrets.token_hex(16), events=["status"])
        await sim.clone(repo, dev)  # the client's working copy exists before the clock starts, as the bot's mirror
        within = ci_seconds + 60
        for index in range(runs):
            since = last_seq(sim)
            branch = f"direct-{index}"
            cpu = cpu_now()
            started = time.time()
            sha = await sim.push_commit(repo, dev, branch, {f"{branch}.txt": f"{index}\n"}, message=branch, base="main")
            pushed = time.time()
            pr = await sim.create_pr(repo, dev, head=branch, base="main", title=branch)
            hooked = await receiver.wait(sha, within)
            await merge_when_mergeable(sim, repo, int(pr["number"]), dev, sha, within)
            await sim.wait_idle(within)  # the CI run the merge started on main, and the deliveries, count too
            used = cpu_since(cpu)
            log = await SimLog.read(sim, repo, since)
            branch_pushed = log.push_of(f"refs/heads/{branch}", sha)
            base = log.push_of("refs/heads/main", sha)
            run = log.ci_run(sha, base or math.inf)
            if branch_pushed is None or base is None or run is None:
                raise BenchError(f"baseline round trip {index}: the simulator's log misses a push or the CI run")
            trips.append(
                RoundTrip(
                    client_push_s=pushed - started,
                    ci_s=run[1] - branch_pushed,
                    status_to_hook_s=hooked - run[1],
                    hook_to_base_s=base - hooked,
                    status_to_base_s=base - run[1],
                    total_s=base - started,
                    cpu_process_s=used[0],
                    cpu_children_s=used[1],
                )
            )
    return trips


# -- the world with the bot --------------------------------------------------------------------------


def last_seq(sim: SimHandle) -> int:
    """The simulator's newest log sequence number (read in-process: the simulator runs in this process)."""
    entries = sim.sim.log.entries
    return int(entries[-1]["seq"]) if entries else 0


async def make_repo(sim: SimHandle, owner: SimUser, name: str, access: dict[str, str], ci_seconds: float) -> str:
    repo = await sim.create_repo(owner, name)
    for login, permission in access.items():
        await sim.add_collaborator(repo, login, permission, as_user=owner)
    await sim.push_commit(repo, owner, "main", {"ci.sh": CI_SCRIPT, "app.txt": "app\n"}, message="Initial")
    await sim.set_ci(repo, "sh ci.sh", context=CONTEXT, delay_s=ci_seconds)
    return repo


def bot_settings(sim: SimHandle, bot: SimUser, repo: str, data_dir: Path, plan: Plan) -> Settings:
    return load_settings(
        {
            "MERGE_BOT_GITEA_URL": sim.url,
            "MERGE_BOT_GITEA_TOKEN": bot.token,
            "MERGE_BOT_WEBHOOK_SECRET": secrets.token_hex(16),
            "MERGE_BOT_LISTEN": f"127.0.0.1:{free_port()}",
            "MERGE_BOT_REPOS": repo,
            "MERGE_BOT_DATA_DIR": str(data_dir),
            "MERGE_BOT_STRATEGY": "staging",
            "MERGE_BOT_BATCH_MAX": "1",  # the serial overhead per PR is what this measures
            "MERGE_BOT_MAX_PARALLEL": "1",
            "MERGE_BOT_FLAKY_RETRIES": "0",
            "MERGE_BOT_GATE_POLL_SECONDS": str(plan.gate_poll_seconds),
            "MERGE_BOT_CI_TIMEOUT_SECONDS": str(max(60, math.ceil(plan.ci_seconds * 10))),
        }
    )


@dataclass(frozen=True)
class EntryRow:
    number: int
    state: str
    reason: str | None
    merged_sha: str | None
    finished_at: float | None


async def entry_rows(engine: AsyncEngine) -> list[EntryRow]:
    query = select(PullRequest.number, Entry.state, Entry.reason, Entry.merged_sha, Entry.finished_at).join(
        PullRequest, PullRequest.id == Entry.pull_request_id
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [
        EntryRow(
            int(r.number), str(r.state), r.reason, r.merged_sha, r.finished_at.timestamp() if r.finished_at else None
        )
        for r in rows
    ]


async def pending_deliveries(engine: AsyncEngine) -> int:
    query = select(func.count()).where(WebhookDelivery.state == DeliveryState.PENDING.value)
    async with engine.connect() as connection:
        return int((await connection.execute(query)).scalar_one())


async def handled_at(engine: AsyncEngine, uuids: list[str]) -> dict[str, tuple[float, float | None]]:
    """delivery UUID → (stored, handled by the inbox worker), from the bot's own table."""
    if not uuids:
        return {}
    query = select(WebhookDelivery.delivery_uuid, WebhookDelivery.received_at, WebhookDelivery.processed_at).where(
        WebhookDelivery.delivery_uuid.in_(uuids)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return {
        str(r.delivery_uuid): (r.received_at.timestamp(), r.processed_at.timestamp() if r.processed_at else None)
        for r in rows
    }


def bot_log_lines(log_path: Path) -> Iterable[dict[str, Any]]:
    """The bot's JSON log lines, each with ``at`` (epoch seconds)."""
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
            event["at"] = datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        yield event


def write_timeline(path: Path, sim_entries: list[dict[str, Any]], log_path: Path, started: float) -> None:
    """Both logs in one time line; ``t`` is seconds since the first /merge was posted."""
    lines = [{"t": e["time"] - started, "source": "sim", **e} for e in sim_entries]
    lines += [{"t": e["at"] - started, "source": "bot", **e} for e in bot_log_lines(log_path) if e["at"] >= started]
    lines.sort(key=lambda line: float(line["t"]))
    with path.open("w") as out:
        for line in lines:
            out.write(json.dumps(line, default=str) + "\n")


def gate_decisions(log_path: Path) -> list[dict[str, Any]]:
    """The bot's ``gate.decision`` log lines, with ``at`` (epoch seconds)."""
    return [event for event in bot_log_lines(log_path) if event.get("event") == "gate.decision"]


# -- one PR's cycle ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    """Times (epoch seconds) of one merged PR's way through the queue; None where a log had no trace of it."""

    number: int
    sha: str
    start_decided: float | None  # the gate's StartAttempt decision for this PR
    candidate_pushed: float  # the staging ref got the candidate (simulator's push log)
    ci_started: float
    ci_done: float  # CI's final status on the candidate
    hook_started: float | None  # the simulator began delivering that status webhook to the bot
    hook_delivered: float | None  # ... and the bot answered (its 202 comes after the group commit)
    deliveries_ahead: int  # deliveries to the bot the simulator started between the status and ours
    handled: float | None  # the bot's inbox worker finished handling that delivery (processed_at)
    decided: float | None  # the gate's MergeAttempt decision
    reads_before_decision: int  # the bot's forge calls between the delivery and that decision
    reads_before_decision_s: float
    base_moved: float  # main got the candidate (simulator's push log)
    finish_decided: float | None  # the gate's FinishMerged decision
    staging_deleted: float | None  # the staging ref was deleted (simulator's push log)
    merged: float  # the entry's finished_at


def phase(later: float | None, earlier: float | None) -> float | None:
    return None if later is None or earlier is None else later - earlier


# (key, label); rows starting with a space break the row above down. "status → base" is the sum of the
# four rows from "hook_queue" to "push_base".
PHASES: tuple[tuple[str, str], ...] = (
    ("gap", "previous base move (or first /merge) → next candidate pushed"),
    ("gap_finish_decide", " base moved → FinishMerged decided (a snapshot)"),
    ("gap_finish", " → staging ref deleted (mark merged, git push)"),
    ("gap_next", " → next StartAttempt decided (db, notify, snapshot)"),
    ("gap_build", " → candidate pushed (fetch, build, git push)"),
    ("gap_first", " (first PR: first /merge → StartAttempt decided)"),
    ("ci", "candidate pushed → CI final status (T + simulator CI)"),
    ("hook_queue", "CI final status → simulator starts the status webhook"),
    ("hook_ack", "status webhook sent → bot answered 202 (stored)"),
    ("decide", "bot answered → gate decided MergeAttempt"),
    ("inbox", " (overlapping: stored → inbox worker handled it)"),
    ("push_base", "gate decided → base moved (fast-forward git push)"),
    ("finish", "base moved → entry marked merged"),
)


def phases(trace: Trace, previous: Trace | None, started: float) -> dict[str, float | None]:
    begin = previous.base_moved if previous is not None else started
    parts: dict[str, float | None] = {
        "gap": trace.candidate_pushed - begin,
        "gap_finish_decide": None,
        "gap_finish": None,
        "gap_next": None,
        "gap_build": phase(trace.candidate_pushed, trace.start_decided),
        "gap_first": None,
        "ci": trace.ci_done - trace.candidate_pushed,
        "hook_queue": phase(trace.hook_started, trace.ci_done),
        "hook_ack": phase(trace.hook_delivered, trace.hook_started),
        "decide": phase(trace.decided, trace.hook_delivered),
        "inbox": phase(trace.handled, trace.hook_delivered),
        "push_base": phase(trace.base_moved, trace.decided),
        "finish": trace.merged - trace.base_moved,
    }
    if previous is None:
        parts["gap_first"] = phase(trace.start_decided, started)
    else:
        parts["gap_finish_decide"] = phase(previous.finish_decided, previous.base_moved)
        parts["gap_finish"] = phase(previous.staging_deleted, previous.finish_decided)
        parts["gap_next"] = phase(trace.start_decided, previous.staging_deleted)
    return parts


def first_decision(decisions: list[dict[str, Any]], action: str, after: float) -> float | None:
    return next((d["at"] for d in decisions if d["at"] >= after and action in d.get("actions", [])), None)


def last_decision(decisions: list[dict[str, Any]], action: str, before: float) -> float | None:
    found = [d["at"] for d in decisions if d["at"] <= before and action in d.get("actions", [])]
    return found[-1] if found else None


def trace_of(
    row: EntryRow, log: SimLog, decisions: list[dict[str, Any]], handled: dict[str, tuple[float, float | None]]
) -> Trace:
    sha = row.merged_sha
    assert sha is not None and row.finished_at is not None
    base = log.push_of("refs/heads/main", sha)
    staged = log.first_push_to("refs/heads/merge-bot/", sha)
    run = log.ci_run(sha, base if base is not None else math.inf)
    if base is None or staged is None or run is None:
        raise BenchError(
            f"PR #{row.number}: the simulator's log misses the candidate push, its CI run or the base move"
        )
    ref = next(p["ref"] for p in log.pushes if p["ref"].startswith("refs/heads/merge-bot/") and p["after"] == sha)
    deleted = next((p["time"] for p in log.pushes if p["ref"] == ref and set(p["after"]) == {"0"}), None)
    hook = log.status_delivery(sha, run[1])
    decided = first_decision(decisions, "MergeAttempt", run[1])
    ahead = 0
    reads: list[dict[str, Any]] = []
    stored: float | None = None
    if hook is not None:
        ahead = sum(1 for d in log.deliveries if run[1] <= d["started"] < hook["started"])
        stored = handled.get(hook["uuid"], (0.0, None))[1]
        if decided is not None:
            reads = [c for c in log.api if hook["time"] <= c["time"] - c["duration_ms"] / 1000 and c["time"] <= decided]
    return Trace(
        number=row.number,
        sha=sha,
        start_decided=last_decision(decisions, "StartAttempt", staged),
        candidate_pushed=staged,
        ci_started=run[0],
        ci_done=run[1],
        hook_started=hook["started"] if hook else None,
        hook_delivered=hook["time"] if hook else None,
        deliveries_ahead=ahead,
        handled=stored,
        decided=decided,
        reads_before_decision=len(reads),
        reads_before_decision_s=sum(c["duration_ms"] for c in reads) / 1000,
        base_moved=base,
        finish_decided=first_decision(decisions, "FinishMerged", base),
        staging_deleted=deleted,
        merged=row.finished_at,
    )


def call_shape(item: dict[str, Any]) -> str:
    path = re.sub(r"/[0-9a-f]{40}\b", "/{sha}", str(item["path"]))
    path = re.sub(r"/\d+(?=/|$)", "/{n}", path)
    path = re.sub(r"^/api/v1/repos/[^/]+/[^/]+", "/repos/{repo}", path)
    if item["kind"] == "git":
        path = re.sub(r"^/[^/]+/[^/]+\.git", "git:", path)
    return f"{item['method']} {path}"


# -- the run -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    prs: int
    ci_seconds: float
    database_url: str | None
    gate_poll_seconds: float
    baseline_runs: int
    timeout_s: float
    bot_log: Path | None
    timeline: Path | None


@dataclass
class Report:
    plan: dict[str, Any]
    baseline: list[RoundTrip]
    drain_s: float
    drain_started_at: float  # epoch seconds: the first /merge comment was posted
    comments_posted_s: float
    lower_bound_s: float
    overhead_per_pr_s: float
    sim_floor_per_pr_s: float
    bot_per_pr_s: float
    status_to_base: Spread | None
    phases: dict[str, Spread | None]
    ci_beyond_t: Spread | None
    deliveries_ahead: Spread | None
    reads_before_decision: Spread | None
    reads_before_decision_s: Spread | None
    late_decisions: int  # merge decisions more than 0.5 s after the status webhook reached the bot
    bot_calls_per_pr: float
    bot_calls: list[tuple[str, int, float]]  # (call, count, total seconds), busiest first
    deliveries_per_pr: float
    delivery_kinds: dict[str, int]
    traces: list[dict[str, Any]]
    goals: dict[str, bool] = field(default_factory=dict)
    decisions_per_pr: float = 0.0
    decisions_by_reason: dict[str, int] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)  # load, CPUs, the checkout's commit
    cpu_per_pr: dict[str, float] = field(default_factory=dict)  # CPU seconds per PR during the drain


async def run(plan: Plan, workdir: Path, log_stream: TextIO, log_path: Path) -> Report:
    async with (
        fresh_database(plan.database_url, workdir, "bench_queue") as database_url,
        running_sim(workdir / "sim") as sim,
    ):
        engine = make_engine(database_url, pool_size=2, application_name="bench-queue")
        try:
            return await run_in_world(plan, workdir, sim, engine, database_url, log_stream, log_path)
        finally:
            await engine.dispose()


async def run_in_world(
    plan: Plan,
    workdir: Path,
    sim: SimHandle,
    engine: AsyncEngine,
    database_url: str,
    log_stream: TextIO,
    log_path: Path,
) -> Report:
    owner = await sim.create_user("owner")
    bot = await sim.create_user("merge-bot")
    dev = await sim.create_user("dev")
    progress(f"baseline: {plan.baseline_runs} direct round trips through the simulator alone")
    baseline = await measure_baseline(sim, owner, dev, plan.ci_seconds, plan.baseline_runs)

    repo = await make_repo(sim, owner, "app", {bot.login: "admin", dev.login: "write"}, plan.ci_seconds)
    settings = bot_settings(sim, bot, repo, workdir / "bot-data", plan)
    logs.configure("info", "json", settings.secrets(), stream=log_stream)
    app = create_app(settings, database_url=database_url)
    async with serving(app, settings.listen.port):
        hooks = await eventually(lambda: bot_hooks(sim, repo, owner, settings.webhook_url), 30, "the bot's webhook")
        if len(hooks) != 1:
            raise BenchError(f"expected one bot webhook, found {len(hooks)}")
        progress(f"opening {plan.prs} PRs")
        numbers: list[int] = []
        for index in range(plan.prs):
            branch = f"feature-{index}"
            await sim.push_commit(
                repo, dev, branch, {f"feature-{index}.txt": f"{index}\n"}, message=branch, base="main"
            )
            pr = await sim.create_pr(repo, dev, head=branch, base="main", title=f"Feature {index}")
            numbers.append(int(pr["number"]))
        await sim.wait_idle(60 + plan.ci_seconds * plan.prs)
        await eventually(lambda: quiet(sim, engine), 60, "the simulator and the bot's inbox to go quiet")
        since = last_seq(sim)

        progress(f"queueing {plan.prs} PRs at once; CI takes {plan.ci_seconds:g} s")
        cpu_before = cpu_now()
        started = time.time()
        await asyncio.gather(*(sim.comment(repo, number, dev, "/merge") for number in numbers))
        posted = time.time()
        rows = await eventually(lambda: all_final(engine, plan.prs), plan.timeout_s, f"{plan.prs} PRs to finish")
        used = cpu_since(cpu_before)
        cpu = {"process_s": used[0], "git_and_ci_children_s": used[1]}
        progress("drained; reading the logs")
        log = await SimLog.read(sim, repo, since, settings.webhook_url, bot.login)
        handled = await handled_at(engine, [str(d["uuid"]) for d in log.deliveries])
    log_stream.flush()
    not_merged = [r for r in rows if r.state != "merged"]
    if not_merged:
        listed = ", ".join(f"#{r.number} {r.state} ({r.reason})" for r in not_merged)
        raise BenchError(f"not every PR merged: {listed}")
    decisions = gate_decisions(log_path)
    if plan.timeline is not None:
        write_timeline(plan.timeline, log.entries, log_path, started)
    traces = sorted((trace_of(r, log, decisions, handled) for r in rows), key=lambda t: t.base_moved)
    report = summarise(plan, baseline, started, posted, traces, log)
    report.decisions_by_reason = dict(
        Counter(str(d.get("reason")) for d in decisions if started <= d["at"] <= report.drain_s + started).most_common()
    )
    report.decisions_per_pr = sum(report.decisions_by_reason.values()) / plan.prs
    report.cpu_per_pr = {name: value / plan.prs for name, value in cpu.items()}
    return report


async def bot_hooks(sim: SimHandle, repo: str, owner: SimUser, url: str) -> list[dict[str, Any]]:
    hooks: list[dict[str, Any]] = await sim.api("GET", f"/repos/{repo}/hooks", token=owner.token)
    return [hook for hook in hooks if hook["config"]["url"] == url]


async def quiet(sim: SimHandle, engine: AsyncEngine) -> bool:
    await sim.wait_idle(30)
    return await pending_deliveries(engine) == 0


async def all_final(engine: AsyncEngine, expected: int) -> list[EntryRow] | None:
    rows = await entry_rows(engine)
    if len(rows) == expected and all(r.state in FINAL_STATES for r in rows):
        return rows
    failed = [r for r in rows if r.state in ("failed", "cancelled")]
    if failed:
        listed = ", ".join(f"#{r.number} {r.state} ({r.reason})" for r in failed)
        raise BenchError(f"a PR did not merge: {listed}")
    return None


def summarise(
    plan: Plan, baseline: list[RoundTrip], started: float, posted: float, traces: list[Trace], log: SimLog
) -> Report:
    n, t = plan.prs, plan.ci_seconds
    drain = max(trace.merged for trace in traces) - started
    overhead = (drain - n * t) / n
    floor = statistics.median(trip.total_s for trip in baseline) - t
    by_phase: dict[str, list[float]] = {name: [] for name, _ in PHASES}
    previous: Trace | None = None
    rows: list[dict[str, Any]] = []
    for trace in traces:
        parts = phases(trace, previous, started)
        previous = trace
        for name, value in parts.items():
            if value is not None:
                by_phase[name].append(value)
        rows.append({**asdict(trace), "status_to_base_s": trace.base_moved - trace.ci_done, "phases_s": parts})
    calls: dict[str, list[float]] = {}
    for item in log.api:
        calls.setdefault(call_shape(item), []).append(item["duration_ms"] / 1000)
    busiest = sorted(((name, len(d), sum(d)) for name, d in calls.items()), key=lambda c: (-c[2], -c[1]))
    late = sum(1 for tr in traces if (phase(tr.decided, tr.hook_delivered) or 0.0) > 0.5)
    report = Report(
        plan={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(plan).items() if k != "database_url"},
        baseline=baseline,
        drain_s=drain,
        drain_started_at=started,
        comments_posted_s=posted - started,
        lower_bound_s=n * t,
        overhead_per_pr_s=overhead,
        sim_floor_per_pr_s=floor,
        bot_per_pr_s=overhead - floor,
        status_to_base=Spread.of(tr.base_moved - tr.ci_done for tr in traces),
        phases={name: Spread.of(values) for name, values in by_phase.items()},
        ci_beyond_t=Spread.of(tr.ci_done - tr.ci_started - t for tr in traces),
        deliveries_ahead=Spread.of(float(tr.deliveries_ahead) for tr in traces if tr.hook_started is not None),
        reads_before_decision=Spread.of(float(tr.reads_before_decision) for tr in traces if tr.decided is not None),
        reads_before_decision_s=Spread.of(tr.reads_before_decision_s for tr in traces if tr.decided is not None),
        late_decisions=late,
        bot_calls_per_pr=len(log.api) / n,
        bot_calls=busiest,
        deliveries_per_pr=len(log.deliveries) / n,
        delivery_kinds=dict(Counter(str(d.get("event_type")) for d in log.deliveries).most_common()),
        traces=rows,
    )
    report.goals = judge(overhead, p99_of(report))
    return report


# -- output ------------------------------------------------------------------------------------------


def spread_row(label: str, spread: Spread | None, unit: str = " s") -> str:
    if spread is None:
        return f"  {label:<64}{'-':>9}"
    return f"  {label:<64}{spread.p50:>9.3f}{spread.p99:>9.3f}{spread.max:>9.3f}{spread.mean:>9.3f}{unit}"


def render(report: Report, goals: bool = True) -> str:
    plan = report.plan
    n, t = plan["prs"], plan["ci_seconds"]
    b = report.baseline
    out = [
        f"merge-bot queue drain: {n} PRs queued at once, CI {t:g} s (simulator delay_s + `test -f app.txt`), "
        f"staging strategy, gate poll {plan['gate_poll_seconds']:g} s",
        f"(commit {report.machine.get('commit')}, {report.machine.get('cpus')} CPUs, 1-min load average "
        f"{report.machine.get('loadavg_1m_before', 0):.1f} before, {report.machine.get('loadavg_1m_after', 0):.1f} "
        "after; bot, simulator and this script share one event loop)",
        "",
        f"  {'drain (first /merge → last PR merged)':<64}{report.drain_s:>9.3f} s",
        f"  {'lower bound N·T (serial testing)':<64}{report.lower_bound_s:>9.3f} s",
        f"  {'overhead per PR (drain - N·T) / N':<64}{report.overhead_per_pr_s:>9.3f} s",
        f"  {'  of which the simulator alone (baseline round trip - T)':<64}{report.sim_floor_per_pr_s:>9.3f} s",
        f"  {'  of which the bot (the rest)':<64}{report.bot_per_pr_s:>9.3f} s",
        f"  {'(posting the N /merge comments took)':<64}{report.comments_posted_s:>9.3f} s",
        f"  {'CPU per PR: this process (bot + simulator + bench, Python)':<64}"
        f"{report.cpu_per_pr.get('process_s', math.nan):>9.3f} s",
        f"  {'CPU per PR: child processes (git, CI scripts)':<64}"
        f"{report.cpu_per_pr.get('git_and_ci_children_s', math.nan):>9.3f} s",
        "",
        f"  {'per PR, seconds':<64}{'p50':>9}{'p99':>9}{'max':>9}{'mean':>9}",
        spread_row("status → base (CI final status → main moved)", report.status_to_base),
    ]
    for name, label in PHASES:
        out.append(
            spread_row(("      " + label[1:]) if label.startswith(" ") else f"  {label}", report.phases.get(name))
        )
    out += [
        spread_row("CI run beyond T (simulator clone + checkout + script)", report.ci_beyond_t),
        spread_row("deliveries to the bot sent ahead of the status (count)", report.deliveries_ahead, ""),
        spread_row("bot forge calls between status delivery and decision", report.reads_before_decision, ""),
        spread_row("  their summed server time", report.reads_before_decision_s),
        f"  merge decisions > 0.5 s after the status webhook reached the bot: {report.late_decisions} of {n}",
        f"  gate decisions per PR: {report.decisions_per_pr:.1f} ("
        + ", ".join(f"{reason} {count}" for reason, count in report.decisions_by_reason.items())
        + ")",
        "",
        f"  bot's forge calls during the drain: {report.bot_calls_per_pr:.1f} per PR; busiest (count, server time):",
    ]
    for name, count, total in report.bot_calls[:8]:
        out.append(f"    {name:<70}{count:>6}{total:>9.3f} s")
    kinds = ", ".join(f"{kind} {count}" for kind, count in report.delivery_kinds.items())
    out += [
        f"  webhooks delivered to the bot: {report.deliveries_per_pr:.1f} per PR ({kinds})",
        "",
        f"baseline, the simulator alone ({len(b)} round trip(s): push branch → CI → status webhook → merge API), "
        "seconds:",
        f"  {'':<64}{'p50':>9}{'max':>9}",
    ]
    for label, attr in (
        ("client: fetch + commit + git push of the branch", "client_push_s"),
        ("branch pushed → CI final status (T + simulator CI)", "ci_s"),
        ("CI final status → webhook received", "status_to_hook_s"),
        ("webhook received → base moved (merge API)", "hook_to_base_s"),
        ("status → base", "status_to_base_s"),
        ("round trip (push started → base moved)", "total_s"),
        ("CPU: this process (simulator, Python)", "cpu_process_s"),
        ("CPU: child processes (git, CI scripts)", "cpu_children_s"),
    ):
        values = [getattr(trip, attr) for trip in b]
        out.append(f"  {label:<64}{statistics.median(values):>9.3f}{max(values):>9.3f}")
    if goals:
        out += ["", "goals:", *goal_lines(report.goals)]
    return "\n".join(out)


def goal_lines(goals: dict[str, bool]) -> list[str]:
    return [f"  {goal:<40} {'met' if met else 'NOT MET'}" for goal, met in goals.items()]


def p99_of(report: Report) -> float:
    return report.status_to_base.p99 if report.status_to_base else math.inf


def judge(overhead: float, p99: float) -> dict[str, bool]:
    return {
        f"overhead per PR < {GOAL_OVERHEAD_S} s": overhead < GOAL_OVERHEAD_S,
        f"p99 status → base < {GOAL_P99_S} s": p99 < GOAL_P99_S,
    }


def median_run(reports: list[Report]) -> Report:
    return sorted(reports, key=lambda r: r.overhead_per_pr_s)[len(reports) // 2]


def summary(reports: list[Report]) -> dict[str, Any]:
    """Across runs: the medians the goals are judged on (the machine is shared; one run can be an outlier)."""
    overhead = statistics.median(r.overhead_per_pr_s for r in reports)
    p99 = statistics.median(p99_of(r) for r in reports)
    return {
        "runs": len(reports),
        "median_overhead_per_pr_s": overhead,
        "median_sim_floor_per_pr_s": statistics.median(r.sim_floor_per_pr_s for r in reports),
        "median_bot_per_pr_s": statistics.median(r.bot_per_pr_s for r in reports),
        "median_status_to_base_p99_s": p99,
        "goals": judge(overhead, p99),
    }


def render_runs(reports: list[Report]) -> str:
    """The median run in full, then one line per run and the goals judged on the medians."""
    if len(reports) == 1:
        return render(reports[0])
    middle = median_run(reports)
    out = [
        f"run {reports.index(middle) + 1} of {len(reports)} (the median overhead) in full:",
        "",
        render(middle, goals=False),
        "",
        f"all runs: {'drain':>9}{'ovh/PR':>9}{'sim':>9}{'bot':>9}{'s→b p50':>9}{'s→b p99':>9}{'load':>7}",
    ]
    for index, r in enumerate(reports, start=1):
        p50 = r.status_to_base.p50 if r.status_to_base else math.nan
        out.append(
            f"  run {index:<4}{r.drain_s:>9.3f}{r.overhead_per_pr_s:>9.3f}{r.sim_floor_per_pr_s:>9.3f}"
            f"{r.bot_per_pr_s:>9.3f}{p50:>9.3f}{p99_of(r):>9.3f}{r.machine.get('loadavg_1m_before', math.nan):>7.1f}"
        )
    total = summary(reports)
    out += [
        f"  median  {'':>9}{total['median_overhead_per_pr_s']:>9.3f}{total['median_sim_floor_per_pr_s']:>9.3f}"
        f"{total['median_bot_per_pr_s']:>9.3f}{'':>9}{total['median_status_to_base_p99_s']:>9.3f}",
        "",
        "goals (on the medians over the runs):",
        *goal_lines(total["goals"]),
    ]
    return "\n".join(out)


def to_json(report: Report) -> dict[str, Any]:
    data = asdict(report)
    data["bot_calls"] = [{"call": c, "count": k, "server_s": s} for c, k, s in report.bot_calls]
    return data


# -- entry point -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/queue.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prs", type=int, default=20, help="PRs queued at once (default 20)")
    parser.add_argument("--ci-seconds", type=float, default=1.0, help="CI duration T in seconds (default 1.0)")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server's maintenance database (a fresh database is created there and dropped); "
        "default: an embedded server in a temporary directory",
    )
    parser.add_argument("--gate-poll-seconds", type=float, default=5.0, help="MERGE_BOT_GATE_POLL_SECONDS (5)")
    parser.add_argument("--baseline-runs", type=int, default=5, help="simulator-alone round trips (default 5)")
    parser.add_argument("--timeout", type=float, help="deadline for the drain, s (default 120 + N·(T + 10))")
    parser.add_argument(
        "--runs", type=int, default=1, help="repeat the whole measurement; goals are judged on the medians (1)"
    )
    parser.add_argument("--bot-log", type=Path, help="keep the bot's JSON log here")
    parser.add_argument(
        "--timeline",
        type=Path,
        help="write the drain's timeline here (JSON lines, by time): the simulator's log (API and git calls, "
        "pushes, CI, webhook deliveries) merged with the bot's log lines",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.prs < 1 or args.ci_seconds < 0 or args.baseline_runs < 1 or args.gate_poll_seconds <= 0 or args.runs < 1:
        parser.error("need --prs, --runs, --baseline-runs >= 1, --ci-seconds >= 0 and --gate-poll-seconds > 0")
    plan = Plan(
        prs=args.prs,
        ci_seconds=args.ci_seconds,
        database_url=args.database_url,
        gate_poll_seconds=args.gate_poll_seconds,
        baseline_runs=args.baseline_runs,
        timeout_s=args.timeout or 120 + args.prs * (args.ci_seconds + 10),
        bot_log=args.bot_log,
        timeline=args.timeline,
    )
    reports: list[Report] = []
    for index in range(args.runs):
        if args.runs > 1:
            progress(f"run {index + 1} of {args.runs}")
        try:
            reports.append(run_once(plan, index if args.runs > 1 else None))
        except (BenchError, TimeoutError, SimApiError) as exc:
            progress(f"failed: {exc}")
            return 1
    if args.json:
        print(json.dumps({"runs": [to_json(r) for r in reports], "summary": summary(reports)}, indent=2))
    else:
        print(render_runs(reports))
    return 0


def numbered(path: Path | None, index: int | None) -> Path | None:
    """``bot.jsonl`` → ``bot.2.jsonl`` for run 2 of several."""
    if path is None or index is None:
        return path
    return path.with_name(f"{path.stem}.{index + 1}{path.suffix}")


def run_once(plan: Plan, index: int | None) -> Report:
    """One complete run in its own temporary directory (database, simulator, bot), cleaned up afterwards."""
    plan = dataclasses.replace(plan, bot_log=numbered(plan.bot_log, index), timeline=numbered(plan.timeline, index))
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    log_path = workdir / "bot.jsonl"
    try:
        with log_path.open("w") as log_stream:

            async def bounded() -> Report:
                # Set-up, baseline and drain each have their own deadlines; this is the backstop.
                async with asyncio.timeout(plan.timeout_s + 300 + plan.baseline_runs * (plan.ci_seconds + 60)):
                    return await run(plan, workdir, log_stream, log_path)

            report = asyncio.run(bounded())
    finally:
        if plan.bot_log is not None and log_path.exists():
            shutil.copyfile(log_path, plan.bot_log)
        shutil.rmtree(workdir, ignore_errors=True)
    report.machine = {
        "cpus": os.cpu_count(),
        "loadavg_1m_before": load_before[0],
        "loadavg_1m_after": os.getloadavg()[0],
        "commit": checkout_commit(),
    }
    return report



if __name__ == "__main__":
    sys.exit(main())
