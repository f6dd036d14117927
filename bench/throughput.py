"""Queue throughput under failures (issues 12 and 13): serial, batches + bisection and speculative chains,
measured next to their models, at one failure rate or a sweep of them.

The PR set
    N PRs (``--prs``, default 100), each adding its own file ``feature-<n>.txt``. A fraction p (``--bad``,
    default 0.10; a comma-separated list is a sweep) of them are bad: they also add a marker file ``bad-<n>``.
    ``--pairs K`` picks K pairs of other PRs that are green alone and red together (PR a adds ``pair-<k>-a``,
    PR b ``pair-<k>-b``). Which PRs are bad or paired is drawn from ``--seed``, so every policy gets the same
    set at a given p.

The CI
    The simulator's CI (``/_sim/ci``) with ``delay_s = T`` (``--ci-seconds``, default 2: an ``asyncio.sleep``
    in the simulator, no process), then a real script on the checked-out candidate: red when the tree holds a
    ``bad-*`` marker or both files of a pair, else red at random with probability q (``--flake``, default 0):
    a flake is ``cksum("<seed>:<CI_RUN_ID>") mod 10^6 < q·10^6``, deterministic from the seed and the run's
    ordinal in its world. CI runs only on ``merge-bot/**`` (the bot's candidates), so CI runs counted are
    candidate runs. It has M runners (``--max-parallel``, alias ``--runners``, default 8): runs beyond that
    wait, pending, as in life. Every policy gets the same M runners, also those that use one at a time. The
    simulator's CI does not cancel the run of a staging branch the bot deletes: an abandoned candidate's run
    takes its runner for its full T, as a CI without cancellation would.

The policies (``--policies``, default serial,batch4,chain8,chain8x4,adaptive)
    A policy is a named set of the bot's settings (``bot.config``, given as ``MERGE_BOT_<NAME>`` through
    ``bot.config.load_settings`` as bench/queue.py does); "depth" is ``max_parallel``, the most candidates
    under CI at once, which is M for the chains:

    serial        batch_max 1, max_parallel 1                one PR at a time
    batch4        batch_max 4 + bisect, max_parallel 1       one batch at a time (gitea-mq's approach)
    batch8        batch_max 8 + bisect, max_parallel 1       the same with 8 (issue 12's third policy)
    chain8        batch_max 1, max_parallel M                a chain of single PRs, each on the one before
    chain8x4      batch_max 4 + bisect, max_parallel M       a chain of batches
    adaptive      adaptive, batch_max 8, max_parallel M      the bot picks batch and depth from its history
    chain8x4-opt  chain8x4 + optimistic                      a green candidate lands the ones before it too

    every one with ``batch_wait_seconds = 0`` (all are queued at once), the window at its default
    (``max_parallel``) and floor 1. ``flaky_retries`` (a PR red alone is tested again on the same SHA that
    often before it is rejected) is 0 for serial, batch4 and batch8, as the batch measurements (issue 12) were
    made, and 1 (the bot's default) for the others; ``--flaky-retries R`` sets it for every policy. The report
    shows each policy's batch, depth and re-tests, and its "settings" column checks that the bot's settings
    carry every one of them (``IGNORED`` names those that did not).

The measurement
    For each p and each policy, in a fresh world (embedded PostgreSQL or a fresh database on
    ``--database-url``, simulator, bot; the bot's app in this event loop, on 127.0.0.1): all N PRs opened,
    then N ``/merge`` comments posted at once, then the clock runs until every entry is final (merged, failed
    or cancelled), then until the simulator is idle (runs of abandoned candidates still under way report).

    drain / serial      first ``/merge`` posted → last entry final (its ``finished_at``), over serial's drain at
                        the same p in the same run (``-`` when serial was not run); also over N·T
    CI runs             the simulator's CI runs (all on candidates), per queued and per merged PR
    wasted              CI runs of attempts the database shows ``abandoned`` for any reason but ``retried``:
                        a candidate is abandoned when the chain under it broke (a red or rebuilt attempt
                        before it) or its base moved, so its result was never used. Each run is matched to
                        its attempt by branch (``attempts.ref``: ``merge-bot/<base>/<attempt id>``; a
                        rebuilt or re-tested candidate is a new attempt on a new ref, so runs and attempts
                        match one to one). An attempt abandoned as ``retried`` was red and is tested again
                        on the same SHA: its run decided that, and counts as a re-test's cause, not waste.
                        The detail lines give every run's attempt outcome (landed, failed, bisected,
                        retried, abandoned by reason) and how many runs were re-tests.
    live / CI           the most candidate branches (``merge-bot/*``) live at once and the most CI runs
                        running at once (simulator log): the depth the chain really reached, in refs and in CI
    bad PRs landed      bad PRs (or second halves of pairs) whose entries merged, and markers in the base
                        branch's final tree (``bad-*``, both files of a pair); must be 0, else exit status 1
    base green          every SHA the bot moved the base to had a green ``ci/test`` run on that very SHA
                        before the push, each move a fast-forward from the tip, no SHA twice
                        (``gitea_sim.logcheck.untested_base_moves`` on the simulator's log, the crash suite's
                        check); a violation is exit status 1
    good PRs rejected   PRs with no marker whose entries did not merge, by state and ``entries.reason``
                        (pair members separately: one of each pair has to be rejected when both are tested
                        together)
    queued → landed     p50 and p95 (nearest rank) of ``finished_at - queued_at`` over merged entries
    machine             1-min load average before and after, CPU seconds (this process; git and CI children)

The models (printed next to the measurement, in CI cycles of T; serial is N cycles)
    Depth 1 (serial, batch4, batch8): s = 1 - p is the chance a PR is good; a batch of b is red with probability
    f_b = 1 - s^b·(1 - q) (q = 0 gives Mergify's calculator). Bisection of a red batch costs ⌈log2 b⌉ extra
    runs (Mergify: one run per level, assuming one culprit per red batch), so
        CI runs per PR      (1 + f_b·⌈log2 b⌉) / b            serial (b = 1): 1; per merged PR: over s
        drain / (N·T)       (1 + f_b·⌈log2 b⌉) / b            serial: 1 (drain N·T)
    one candidate tested at a time, every run taking T and the bot's own work taken as nothing.
    Chains (depth > 1): ``bot.queue.adaptive.forecast(N, p, b, d, q)``, the model the adaptive policy chooses
    with (its module docstring derives it: a chain of d batches lands its longest green prefix per cycle,
    a red batch is bisected at ⌈log2 b⌉·max(1, b·p/f_b) cycles): drain / (N·T) = cycles / N, and its CI
    runs per merged PR. For ``adaptive`` the batch and depth are those ``bot.queue.adaptive.choose`` picks
    for N waiting knowing p and q (the bot starts from its prior, p = 10 %, and learns as entries end).
    Both models: queued → landed about half the drain; they ignore pairs (a red pair costs like a bad PR),
    re-tests (with flaky_retries R each bad PR alone costs R more runs and cycles), the window rule (it
    halves after a failure) and the bot's and the simulator's overhead per cycle (bench/queue.py measures
    it: ~0.5 s per PR on this machine). For depth 1 the report gives "beyond CI per run" =
    (drain - runs·T) / runs for that overhead.

The sweep and the plot
    With several p (``--bad 0,0.1,0.3``) every policy runs at every p, a table per p and one of drain / serial
    (policy by p) at the end. ``--plot docs/throughput.svg`` writes that as a line chart (plain SVG written
    here: drain / serial against p, one line per policy). ``--json`` prints the results as JSON instead of
    the text report, ``--json-file`` also writes them.

The goals (printed as PASS / FAIL / n/a lines at the end)
    * p = 10 %, q = 0: the best policy drains in at most 0.2x serial with at most 1.0 CI runs per merged PR
    * p = 0, q = 0: the best policy drains in at most 0.1x serial
    * p = 30 %, q = 0: adaptive (the policy meant to be left on whatever p is) is never worse than serial
    * q = 5 %: no good PR is rejected by any policy with flaky_retries >= 1
    They are stated for N = 100, T = 2 s and 8 runners; at other sizes the line says so. A goal needs its p
    and q in the run (n/a otherwise; the flake goal is a run of its own, ``--flake 0.05``). The goals do not
    set the exit status; bad PRs landed and a base on a SHA not green on itself do (they print FAIL too).

Run it (from the repository root, with the venv active)::

    python bench/throughput.py                                       # N = 100, T = 2 s, p = 0.10, 8 runners
    python bench/throughput.py --bad 0,0.1,0.3 --plot docs/throughput.svg --json-file /tmp/sweep.json
    python bench/throughput.py --flake 0.05 --bad 0.1                # the flake goal
    python bench/throughput.py --prs 12 --ci-seconds 0.5 --policies serial,chain8   # a quick look
    python bench/throughput.py --policies serial,batch4,batch8 --runners 4           # issue 12's measurement

It stops by itself (every wait has a deadline), stops the bot, the simulator and the embedded PostgreSQL and
removes its temporary directories, also on errors. Only 127.0.0.1 is contacted. Exit status 1 when a bad PR
landed, the base held a SHA not green on itself, or a run failed; else 0 (good PRs rejected, e.g. by flakes,
and missed goals are reported, not failed on).
"""

from __future__ import annotations

import sys
from pathlib import Path

# As bench/queue.py: bench/ first on sys.path would let bench/queue.py shadow the standard library's `queue`;
# move it to the end, where `harness` is still found (bench/harness.py says more).
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import json
import math
import os
import random
import resource
import secrets
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from harness import BenchError, checkout_commit, eventually, fresh_database, percentile, progress, serving
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import logs
from bot.app import create_app
from bot.config import Settings, load_settings
from bot.db.models import Attempt, DeliveryState, Entry, PullRequest, WebhookDelivery
from bot.db.session import make_engine
from bot.queue.adaptive import Estimate, choose, forecast
from bot.queue.policy import QueuePolicy
from gitea_sim.gitrepo import ZERO_SHA, run_git
from gitea_sim.logcheck import untested_base_moves
from gitea_sim.testing import SimApiError, SimHandle, SimUser, free_port, running_sim

CONTEXT = "ci/test"
CI_BRANCHES = ["merge-bot/**"]
FINAL_STATES = ("merged", "failed", "cancelled")
FLAKE_SCALE = 1_000_000
STAGING_REFS = "refs/heads/merge-bot/"
GOAL_SIZE = (100, 2.0, 8)  # the goals are stated for N = 100, T = 2 s, 8 runners


# -- the policies ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """A named set of the bot's settings. ``chained``: ``max_parallel`` is the run's M (else 1)."""

    name: str
    batch_max: int
    chained: bool
    flaky_retries: int  # the default; --flaky-retries sets it for every policy
    about: str
    optimistic: bool = False
    adaptive: bool = False

    def settings(self, max_parallel: int, flaky_retries: int | None) -> dict[str, Any]:
        """The bot's settings (``Settings`` field names) this policy runs with."""
        return {
            "batch_max": self.batch_max,
            "bisect": True,
            "max_parallel": max_parallel if self.chained else 1,
            "optimistic": self.optimistic,
            "flaky_retries": self.flaky_retries if flaky_retries is None else flaky_retries,
            "adaptive": self.adaptive,
        }


POLICIES: dict[str, Policy] = {
    p.name: p
    for p in (
        Policy("serial", 1, False, 0, "one PR at a time"),
        Policy("batch4", 4, False, 0, "batches of 4 + bisection, one at a time"),
        Policy("batch8", 8, False, 0, "batches of 8 + bisection, one at a time"),
        Policy("chain8", 1, True, 1, "a chain of single PRs"),
        Policy("chain8x4", 4, True, 1, "a chain of batches of 4 + bisection"),
        Policy("adaptive", 8, True, 1, "batch (≤ 8) and depth chosen from the history", adaptive=True),
        Policy("chain8x4-opt", 4, True, 1, "chain8x4, a green candidate landing those before it", optimistic=True),
    )
}
DEFAULT_POLICIES = ("serial", "batch4", "chain8", "chain8x4", "adaptive")


def env_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


# -- the PR set and its CI -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PrSpec:
    index: int
    kind: str  # "good", "bad", "pair-a", "pair-b"
    files: dict[str, str]

    @property
    def branch(self) -> str:
        return f"feature-{self.index}"


def pr_set(prs: int, bad: float, pairs: int, seed: int) -> list[PrSpec]:
    """The N PRs, with ``round(bad·N)`` bad ones and ``pairs`` pairs among the others, drawn from ``seed``."""
    rng = random.Random(seed)
    bad_ones = set(rng.sample(range(prs), round(bad * prs)))
    others = [i for i in range(prs) if i not in bad_ones]
    if 2 * pairs > len(others):
        raise BenchError(f"--pairs {pairs} needs {2 * pairs} PRs that are not bad; there are {len(others)}")
    paired = rng.sample(others, 2 * pairs)
    halves = {index: (k, "a") for k, index in enumerate(paired[:pairs])}
    halves |= {index: (k, "b") for k, index in enumerate(paired[pairs:])}
    out: list[PrSpec] = []
    for i in range(prs):
        files = {f"feature-{i}.txt": f"{i}\n"}
        kind = "good"
        if i in bad_ones:
            kind, files[f"bad-{i}"] = "bad", "bad\n"
        elif i in halves:
            k, half = halves[i]
            kind, files[f"pair-{k}-{half}"] = f"pair-{half}", f"{k}\n"
        out.append(PrSpec(i, kind, files))
    return out


def ci_script(seed: int, flake: float) -> str:
    """Red on a ``bad-*`` marker or on both files of a pair; else red when this run flakes."""
    threshold = round(flake * FLAKE_SCALE)
    return f"""#!/bin/sh
test -f app.txt || {{ echo "red: no app.txt"; exit 1; }}
for f in bad-*; do
  if [ -e "$f" ]; then echo "red: marker $f"; exit 1; fi
done
for a in pair-*-a; do
  if [ -e "$a" ] && [ -e "${{a%-a}}-b" ]; then echo "red: $a with ${{a%-a}}-b"; exit 1; fi
done
if [ {threshold} -gt 0 ]; then
  h=$(printf '%s:%s' '{seed}' "$CI_RUN_ID" | cksum | cut -d' ' -f1)
  if [ $((h % {FLAKE_SCALE})) -lt {threshold} ]; then echo "flake: run $CI_RUN_ID"; exit 1; fi
fi
echo green
"""


# -- the models --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """The depth-1 batch model (issue 12)."""

    batch: int
    red_batch: float  # f_b = 1 - s^b·(1 - q)
    levels: int  # ⌈log2 b⌉
    runs_per_pr: float
    drain_ratio: float  # drain / (N·T)
    drain_s: float
    wait_median_s: float


def model(batch: int, bad: float, flake: float, prs: int, ci_seconds: float) -> Model:
    s = 1.0 - bad
    red = 1.0 - s**batch * (1.0 - flake)
    levels = math.ceil(math.log2(batch)) if batch > 1 else 0
    runs = (1.0 + red * levels) / batch
    drain = runs * prs * ci_seconds
    return Model(batch, red, levels, runs, runs, drain, drain / 2)


@dataclass(frozen=True)
class Expected:
    """What a model expects of one policy at one p: ``how`` names the model and the batch and depth it took."""

    how: str
    batch: int
    depth: int
    drain_ratio: float  # drain / (N·T), which is drain / serial's N·T
    runs_per_merged: float
    drain_s: float
    wait_median_s: float


def expected(settings: Mapping[str, Any], p: float, q: float, prs: int, ci_seconds: float) -> Expected:
    """The batch model for one candidate at a time; ``bot.queue.adaptive.forecast`` for a chain, with the
    batch and depth ``bot.queue.adaptive.choose`` picks (knowing p and q) for an adaptive policy."""
    batch, depth = int(settings["batch_max"]), int(settings["max_parallel"])
    if settings["adaptive"]:
        policy = QueuePolicy(batch_max=batch, max_parallel=depth, adaptive=True)
        choice = choose(prs, Estimate(p=p, flakes={CONTEXT: q} if q > 0 else {}), policy)
        batch, depth = choice.batch, choice.window
        how = f"choose → forecast(b {batch}, d {depth})"
    elif depth == 1:
        m = model(batch, p, q, prs, ci_seconds)
        runs = m.runs_per_pr / (1.0 - p) if p < 1 else math.inf
        return Expected(f"batch model (b {batch})", batch, 1, m.drain_ratio, runs, m.drain_s, m.wait_median_s)
    else:
        how = f"forecast(b {batch}, d {depth})"
    seen = forecast(prs, p, batch, depth, q)
    ratio = seen.cycles / prs
    drain = seen.cycles * ci_seconds
    return Expected(how, seen.batch, seen.depth, ratio, seen.runs_per_merge, drain, drain / 2)


# -- one world ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    prs: int
    ci_seconds: float
    bad: tuple[float, ...]
    pairs: int
    flake: float
    seed: int
    max_parallel: int  # the chains' depth and every policy's CI runners
    flaky_retries: int | None  # None: each policy's own
    policies: tuple[str, ...]
    gate_poll_seconds: float
    timeout_s: float
    database_url: str | None

    def settings(self, policy: str) -> dict[str, Any]:
        return POLICIES[policy].settings(self.max_parallel, self.flaky_retries)


@dataclass
class Result:
    policy: str
    p: float
    settings: dict[str, Any]  # what the policy asked the bot for (Settings field names)
    ignored: list[str] = field(default_factory=list)  # settings the bot's Settings did not carry as asked
    drain_s: float = math.nan
    drain_ratio: float = math.nan  # drain / (N·T)
    vs_serial: float = math.nan  # drain / serial's drain at the same p, in this run
    ci_runs: int = 0
    ci_red: int = 0
    flakes: int = 0
    most_at_once: int = 0
    most_live: int = 0
    runs_by_outcome: dict[str, int] = field(default_factory=dict)  # attempt outcome → CI runs
    wasted_runs: int = 0
    retest_runs: int = 0
    merged: int = 0
    runs_per_pr: float = math.nan
    runs_per_merged: float = math.nan
    beyond_ci_per_run_s: float = math.nan  # depth 1 only
    bad_landed: list[int] = field(default_factory=list)  # PR numbers
    bad_markers_in_base: list[str] = field(default_factory=list)
    base_violations: list[str] = field(default_factory=list)
    good_rejected: dict[str, int] = field(default_factory=dict)  # reason → count (plain good PRs)
    pair_rejected: dict[str, int] = field(default_factory=dict)  # reason → count (members of pairs)
    bad_rejected: int = 0
    wait_p50_s: float = math.nan
    wait_p95_s: float = math.nan
    merged_numbers: list[int] = field(default_factory=list)
    machine: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def unsafe_merge(self) -> bool:
        return bool(self.bad_landed or self.bad_markers_in_base)

    @property
    def unsafe(self) -> bool:
        return self.unsafe_merge or bool(self.base_violations)


@dataclass(frozen=True)
class EntryRow:
    number: int
    state: str
    reason: str | None
    queued_at: float
    finished_at: float | None


@dataclass(frozen=True)
class AttemptRow:
    id: int
    state: str
    reason: str | None
    ref: str | None
    retry_of: int | None


@dataclass(frozen=True)
class RunRow:
    """One CI run of the simulator: the branch it ran for (a candidate's ref without ``refs/heads/``)."""

    branch: str
    state: str
    flaked: bool


async def entry_rows(engine: AsyncEngine) -> list[EntryRow]:
    query = select(PullRequest.number, Entry.state, Entry.reason, Entry.queued_at, Entry.finished_at).join(
        PullRequest, PullRequest.id == Entry.pull_request_id
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [
        EntryRow(
            int(r.number),
            str(r.state),
            r.reason,
            r.queued_at.timestamp(),
            r.finished_at.timestamp() if r.finished_at else None,
        )
        for r in rows
    ]


async def attempt_rows(engine: AsyncEngine) -> list[AttemptRow]:
    query = select(Attempt.id, Attempt.state, Attempt.reason, Attempt.ref, Attempt.retry_of)
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [AttemptRow(int(r.id), str(r.state), r.reason, r.ref, r.retry_of) for r in rows]


async def all_final(engine: AsyncEngine, expected: int) -> list[EntryRow] | None:
    rows = await entry_rows(engine)
    if len(rows) == expected and all(r.state in FINAL_STATES for r in rows):
        return rows
    return None


async def quiet(sim: SimHandle, engine: AsyncEngine) -> bool:
    await sim.wait_idle(30)
    query = select(func.count()).where(WebhookDelivery.state == DeliveryState.PENDING.value)
    async with engine.connect() as connection:
        return int((await connection.execute(query)).scalar_one()) == 0


def last_seq(sim: SimHandle) -> int:
    entries = sim.sim.log.entries
    return int(entries[-1]["seq"]) if entries else 0


def cpu_now() -> tuple[float, float]:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time(), children.ru_utime + children.ru_stime


async def git(work: Path, *args: str) -> str:
    _, out, _ = await run_git(["-C", str(work), *args])
    return out


async def open_prs(sim: SimHandle, repo: str, dev: SimUser, specs: Sequence[PrSpec]) -> dict[int, PrSpec]:
    """Every PR branch committed in the developer's clone, pushed in one ``git push``, then the PRs opened."""
    work = await sim.clone(repo, dev)
    for spec in specs:
        await git(work, "checkout", "--quiet", "-B", spec.branch, "origin/main")
        for name, content in spec.files.items():
            (work / name).write_text(content)
        await git(work, "add", "-A")
        await git(work, "commit", "--quiet", "-m", f"Feature {spec.index} ({spec.kind})")
    code, out, err = await run_git(
        ["-C", str(work), "push", "--porcelain", "origin", *(f"{s.branch}:refs/heads/{s.branch}" for s in specs)],
        check=False,
        time_limit_s=300,
    )
    if code != 0:
        raise BenchError(f"pushing the PR branches failed: {err or out}")
    by_number: dict[int, PrSpec] = {}
    for spec in specs:
        pr = await sim.create_pr(repo, dev, head=spec.branch, base="main", title=f"Feature {spec.index}")
        by_number[int(pr["number"])] = spec
    return by_number


def bot_settings(
    sim: SimHandle, bot: SimUser, repo: str, data_dir: Path, plan: Plan, chosen: Mapping[str, Any]
) -> Settings:
    return load_settings(
        {
            "MERGE_BOT_GITEA_URL": sim.url,
            "MERGE_BOT_GITEA_TOKEN": bot.token,
            "MERGE_BOT_WEBHOOK_SECRET": secrets.token_hex(16),
            "MERGE_BOT_LISTEN": f"127.0.0.1:{free_port()}",
            "MERGE_BOT_REPOS": repo,
            "MERGE_BOT_DATA_DIR": str(data_dir),
            "MERGE_BOT_STRATEGY": "staging",
            "MERGE_BOT_GATE_POLL_SECONDS": str(plan.gate_poll_seconds),
            "MERGE_BOT_CI_TIMEOUT_SECONDS": str(max(60, math.ceil(plan.ci_seconds * 10))),
            "MERGE_BOT_BATCH_WAIT_SECONDS": "0",
            **{f"MERGE_BOT_{name.upper()}": env_value(value) for name, value in chosen.items()},
        }
    )


async def base_tree(sim: SimHandle, repo: str, user: SimUser) -> list[str]:
    """The file names in the base branch's final tree (fetched into ``user``'s clone)."""
    work = await sim.clone(repo, user)
    return (await git(work, "ls-tree", "-r", "--name-only", "origin/main")).split()


def markers_in(tree: Sequence[str]) -> list[str]:
    names = set(tree)
    found = sorted(name for name in names if name.startswith("bad-"))
    found += sorted(
        f"{name} + {name[:-1]}b"
        for name in names
        if name.startswith("pair-") and name.endswith("-a")
        if f"{name[:-1]}b" in names
    )
    return found


@dataclass
class Evidence:
    """What one world left to judge it by, read once every entry was final."""

    started: float
    rows: list[EntryRow]
    by_number: dict[int, PrSpec]
    runs: list[RunRow]
    attempts: list[AttemptRow]
    log: list[dict[str, Any]]  # the simulator's push and ci events, in order
    tree: list[str]
    bot_login: str


async def measure_world(plan: Plan, policy: str, p: float, workdir: Path, log_path: Path) -> Result:
    chosen = plan.settings(policy)
    specs = pr_set(plan.prs, p, plan.pairs, plan.seed)
    async with (
        fresh_database(plan.database_url, workdir, "bench_throughput") as database_url,
        running_sim(workdir / "sim") as sim,
    ):
        engine = make_engine(database_url, pool_size=2, application_name="bench-throughput")
        try:
            owner = await sim.create_user("owner")
            bot = await sim.create_user("merge-bot")
            dev = await sim.create_user("dev")
            repo = await sim.create_repo(owner, "app")
            for login, permission in ((bot.login, "admin"), (dev.login, "write")):
                await sim.add_collaborator(repo, login, permission, as_user=owner)
            await sim.push_commit(
                repo, owner, "main", {"ci.sh": ci_script(plan.seed, plan.flake), "app.txt": "app\n"}, message="Init"
            )
            await sim.set_ci(
                repo,
                "sh ci.sh",
                context=CONTEXT,
                delay_s=plan.ci_seconds,
                branches=CI_BRANCHES,
                runners=plan.max_parallel,
            )
            settings = bot_settings(sim, bot, repo, workdir / "bot-data", plan, chosen)
            ignored = [name for name, value in chosen.items() if getattr(settings, name, None) != value]
            result = Result(policy, p, chosen, ignored)
            with log_path.open("w") as log_stream:
                logs.configure("info", "json", settings.secrets(), stream=log_stream)
                app = create_app(settings, database_url=database_url)
                async with serving(app, settings.listen.port):
                    await eventually(lambda: bot_hook(sim, repo, owner, settings.webhook_url), 30, "the bot's webhook")
                    progress(f"{policy} at p={p:g}: opening {plan.prs} PRs")
                    by_number = await open_prs(sim, repo, dev, specs)
                    await sim.wait_idle(60 + plan.prs)
                    await eventually(lambda: quiet(sim, engine), 120, "the simulator and the bot's inbox to go quiet")
                    since = last_seq(sim)
                    progress(f"{policy} at p={p:g}: queueing {plan.prs} PRs at once; CI takes {plan.ci_seconds:g} s")
                    load_before = os.getloadavg()[0]
                    cpu_before = cpu_now()
                    started = time.time()
                    await asyncio.gather(*(sim.comment(repo, number, dev, "/merge") for number in by_number))
                    rows = await eventually(
                        lambda: all_final(engine, plan.prs), plan.timeout_s, f"{plan.prs} entries to be final"
                    )
                    cpu = cpu_now()
                    result.machine = {
                        "cpus": float(os.cpu_count() or 0),
                        "loadavg_1m_before": load_before,
                        "loadavg_1m_after": os.getloadavg()[0],
                        "cpu_process_s": cpu[0] - cpu_before[0],
                        "cpu_children_s": cpu[1] - cpu_before[1],
                    }
                    progress(f"{policy} at p={p:g}: every entry is final; reading the logs and the base branch")
                    await sim.wait_idle(60 + 4 * plan.ci_seconds)  # abandoned candidates' runs report
                    log = sorted(
                        [*await sim.log(kind="push"), *await sim.log(kind="ci", since=since)], key=lambda e: e["seq"]
                    )
                    runs = [
                        RunRow(run.branch, run.state, "flake: run" in run.output)
                        for run in sim.sim.ci.runs.values()
                        if run.repo == repo
                    ]
                    attempts = await attempt_rows(engine)
                    tree = await base_tree(sim, repo, owner)
                    evidence = Evidence(started, rows, by_number, runs, attempts, log, tree, bot.login)
        finally:
            await engine.dispose()
    summarise(result, plan, evidence)
    return result


async def bot_hook(sim: SimHandle, repo: str, owner: SimUser, url: str) -> bool:
    hooks: list[dict[str, Any]] = await sim.api("GET", f"/repos/{repo}/hooks", token=owner.token)
    return sum(1 for hook in hooks if hook["config"]["url"] == url) == 1


# -- judging one world -------------------------------------------------------------------------------


def run_outcomes(runs: Iterable[RunRow], attempts: Iterable[AttemptRow]) -> Counter[str]:
    """CI runs by what became of the attempt each ran for (matched by its branch, ``attempts.ref``):
    ``landed``, ``failed``, ``bisected``, ``retried``, ``abandoned: <reason>`` (wasted), ``active``, or
    ``no attempt`` (a branch no attempt pushed: not expected)."""
    by_branch = {a.ref.removeprefix("refs/heads/"): a for a in attempts if a.ref}
    outcomes: Counter[str] = Counter()
    for run in runs:
        attempt = by_branch.get(run.branch)
        if attempt is None:
            outcomes["no attempt"] += 1
        elif attempt.state == "done":
            outcomes["landed"] += 1
        elif attempt.state == "failed":
            outcomes["bisected" if attempt.reason == "bisected" else "failed"] += 1
        elif attempt.state == "abandoned":
            outcomes["retried" if attempt.reason == "retried" else f"abandoned: {attempt.reason or '-'}"] += 1
        else:
            outcomes["active"] += 1
    return outcomes


def retest_runs(runs: Iterable[RunRow], attempts: Iterable[AttemptRow]) -> int:
    """CI runs of attempts that re-test a red candidate on the same SHA (``attempts.retry_of`` set)."""
    retests = {a.ref.removeprefix("refs/heads/") for a in attempts if a.ref and a.retry_of is not None}
    return sum(1 for run in runs if run.branch in retests)


def most_at_once(log: Iterable[dict[str, Any]]) -> int:
    """The most CI runs running together (``ci`` events: phase ``running``, then ``done``)."""
    running: set[int] = set()
    most = 0
    for event in log:
        if event["kind"] != "ci":
            continue
        if event.get("phase") == "running":
            running.add(event["run"])
            most = max(most, len(running))
        elif event.get("phase") == "done":
            running.discard(event["run"])
    return most


def most_live(log: Iterable[dict[str, Any]]) -> int:
    """The most candidate branches (``refs/heads/merge-bot/*``) that existed at once: the chain's depth."""
    live: set[str] = set()
    most = 0
    for event in log:
        if event["kind"] != "push" or not event["ref"].startswith(STAGING_REFS):
            continue
        if event["after"] == ZERO_SHA:
            live.discard(event["ref"])
        else:
            live.add(event["ref"])
            most = max(most, len(live))
    return most


def summarise(result: Result, plan: Plan, ev: Evidence) -> None:
    n, t = plan.prs, plan.ci_seconds
    rows, by_number = ev.rows, ev.by_number
    result.drain_s = max(r.finished_at or ev.started for r in rows) - ev.started
    result.drain_ratio = result.drain_s / (n * t) if t > 0 else math.nan
    result.ci_runs = len(ev.runs)
    result.ci_red = sum(1 for run in ev.runs if run.state != "success")
    result.flakes = sum(1 for run in ev.runs if run.flaked)
    result.most_at_once = most_at_once(ev.log)
    result.most_live = most_live(ev.log)
    outcomes = run_outcomes(ev.runs, ev.attempts)
    result.runs_by_outcome = dict(outcomes.most_common())
    result.wasted_runs = sum(count for name, count in outcomes.items() if name.startswith("abandoned"))
    result.retest_runs = retest_runs(ev.runs, ev.attempts)
    merged = [r for r in rows if r.state == "merged"]
    result.merged = len(merged)
    result.merged_numbers = sorted(r.number for r in merged)
    result.runs_per_pr = result.ci_runs / n
    result.runs_per_merged = result.ci_runs / len(merged) if merged else math.inf
    if result.ci_runs and result.settings["max_parallel"] == 1:
        result.beyond_ci_per_run_s = (result.drain_s - result.ci_runs * t) / result.ci_runs
    kinds = {r.number: by_number[r.number].kind for r in rows}
    pair_merged: Counter[str] = Counter()
    for r in merged:
        if kinds[r.number] == "bad":
            result.bad_landed.append(r.number)
        elif kinds[r.number].startswith("pair-"):
            pair_merged[next(name for name in by_number[r.number].files if name.startswith("pair-"))[:-2]] += 1
    for pair, count in pair_merged.items():
        if count > 1:
            result.bad_landed += [
                r.number for r in merged if any(f.startswith(pair + "-") for f in by_number[r.number].files)
            ]
    result.bad_landed.sort()
    result.bad_markers_in_base = markers_in(ev.tree)
    result.base_violations = untested_base_moves(ev.log, 0, context=CONTEXT, pusher=ev.bot_login)
    good: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    for r in rows:
        if r.state == "merged":
            continue
        reason = f"{r.state}: {r.reason or '-'}"
        if kinds[r.number] == "bad":
            result.bad_rejected += 1
        elif kinds[r.number] == "good":
            good[reason] += 1
        else:
            pairs[reason] += 1
    result.good_rejected = dict(good.most_common())
    result.pair_rejected = dict(pairs.most_common())
    waits = [r.finished_at - r.queued_at for r in merged if r.finished_at is not None]
    result.wait_p50_s = percentile(waits, 50)
    result.wait_p95_s = percentile(waits, 95)


def run_world(plan: Plan, policy: str, p: float) -> Result:
    """One policy at one p in its own temporary directory (database, simulator, bot), removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-throughput-{policy}-"))
    try:

        async def bounded() -> Result:
            async with asyncio.timeout(plan.timeout_s + 600):  # the backstop; every wait has its own deadline
                return await measure_world(plan, policy, p, workdir, workdir / "bot.jsonl")

        return asyncio.run(bounded())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def against_serial(results: Sequence[Result]) -> None:
    """Each result's drain over serial's drain at the same p (NaN without a serial run there)."""
    serial = {r.p: r.drain_s for r in results if r.policy == "serial" and r.error is None}
    for r in results:
        base = serial.get(r.p, math.nan)
        r.vs_serial = r.drain_s / base if base and base > 0 else math.nan


# -- the goals ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    name: str
    status: str  # PASS, FAIL, n/a
    detail: str
    hard: bool = False  # a FAIL sets the exit status


def near(a: float, b: float) -> bool:
    return math.isclose(a, b, abs_tol=1e-9)


def fastest(results: Iterable[Result]) -> Result | None:
    done = [r for r in results if r.error is None and r.policy != "serial" and math.isfinite(r.vs_serial)]
    return min(done, key=lambda r: (r.vs_serial, r.runs_per_merged), default=None)


def goals(plan: Plan, results: Sequence[Result]) -> list[Goal]:
    at = {(r.p, r.policy): r for r in results if r.error is None}

    def measured(p: float) -> list[Result]:
        return [r for (rp, _), r in at.items() if near(rp, p)] if near(plan.flake, 0.0) else []

    out: list[Goal] = []
    name = "p = 10 %, q = 0: the best policy ≤ 0.2x serial with ≤ 1.0 CI runs per merged PR"
    here = measured(0.10)
    best = fastest(here)
    if best is None:
        out.append(Goal(name, "n/a", "needs serial and another policy at --bad 0.1 with --flake 0"))
    else:
        frugal = fastest(r for r in here if r.runs_per_merged <= 1.0)
        if frugal is not None and frugal.vs_serial <= 0.2:
            out.append(Goal(name, "PASS", describe(frugal)))
        else:
            within = describe(frugal) if frugal is not None else "none"
            out.append(Goal(name, "FAIL", f"fastest {describe(best)}; fastest within 1.0 runs: {within}"))
    name = "p = 0, q = 0: the best policy ≤ 0.1x serial"
    here = measured(0.0)
    best = fastest(here)
    if best is None:
        out.append(Goal(name, "n/a", "needs serial and another policy at --bad 0 with --flake 0"))
    else:
        out.append(Goal(name, "PASS" if best.vs_serial <= 0.1 else "FAIL", describe(best)))
    name = "p = 30 %, q = 0: adaptive never worse than serial"
    here = measured(0.30)
    adaptive = next((r for r in here if r.policy == "adaptive" and math.isfinite(r.vs_serial)), None)
    if adaptive is None:
        out.append(Goal(name, "n/a", "needs serial and adaptive at --bad 0.3 with --flake 0"))
    else:
        worse = ", ".join(f"{r.policy} {r.vs_serial:.2f}x" for r in here if r.vs_serial > 1.0) or "none"
        status = "PASS" if adaptive.vs_serial <= 1.0 else "FAIL"
        out.append(Goal(name, status, f"{describe(adaptive)}; policies worse than serial: {worse}"))
    name = "q = 5 %: no good PR rejected with flaky_retries ≥ 1"
    retrying = [r for r in results if r.error is None and r.settings["flaky_retries"] >= 1]
    if not near(plan.flake, 0.05) or not retrying:
        out.append(Goal(name, "n/a", "needs --flake 0.05 and a policy with flaky_retries ≥ 1"))
    else:
        rejected = [r for r in retrying if r.good_rejected]
        detail = "; ".join(
            f"{r.policy} at p={r.p:g}: " + ", ".join(f"{k} x{v}" for k, v in r.good_rejected.items()) for r in rejected
        )
        checked = ", ".join(dict.fromkeys(r.policy for r in retrying))
        out.append(Goal(name, "FAIL" if rejected else "PASS", detail or f"0 rejected ({checked})"))
    done = [r for r in results if r.error is None]
    landed = [
        f"{r.policy} at p={r.p:g}: PRs {r.bad_landed}, markers {r.bad_markers_in_base}" for r in done if r.unsafe_merge
    ]
    out.append(Goal("no bad PR landed", "FAIL" if landed else "PASS", "; ".join(landed) or "0", hard=True))
    moves = [f"{r.policy} at p={r.p:g}: {v}" for r in done for v in r.base_violations]
    detail = "; ".join(moves[:5]) + (f" (and {len(moves) - 5} more)" if len(moves) > 5 else "")
    green = detail or "every move a fast-forward to a SHA green on itself before the push"
    out.append(Goal("the base held only SHAs green on themselves", "FAIL" if moves else "PASS", green, hard=True))
    if (plan.prs, plan.ci_seconds, plan.max_parallel) != GOAL_SIZE:
        size = f"measured at N={plan.prs}, T={plan.ci_seconds:g} s, {plan.max_parallel} runners, not N=100, T=2 s, 8"
        out = [g if g.hard or g.status == "n/a" else Goal(g.name, g.status, f"{g.detail} [{size}]") for g in out]
    return out


def describe(r: Result) -> str:
    return f"{r.policy} {r.vs_serial:.3f}x serial, {r.runs_per_merged:.2f} CI runs per merged PR"


# -- output ------------------------------------------------------------------------------------------


def expectations(plan: Plan) -> dict[tuple[float, str], Expected]:
    return {
        (p, name): expected(plan.settings(name), p, plan.flake, plan.prs, plan.ci_seconds)
        for p in plan.bad
        for name in plan.policies
    }


def identical(results: Sequence[Result]) -> bool:
    done = [r for r in results if r.error is None]
    return len(done) > 1 and all(
        (r.ci_runs, r.merged_numbers) == (done[0].ci_runs, done[0].merged_numbers) for r in done[1:]
    )


def fmt(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def render(plan: Plan, results: Sequence[Result], commit: str) -> str:
    n, t = plan.prs, plan.ci_seconds
    models = expectations(plan)
    retries = "each policy's own" if plan.flaky_retries is None else str(plan.flaky_retries)
    out = [
        f"merge-bot throughput: {n} PRs queued at once ({plan.pairs} red-together pairs, flake rate {plan.flake:g}, "
        f"seed {plan.seed}), CI {t:g} s on merge-bot/** with {plan.max_parallel} runners (= the chains' depth); "
        f"flaky_retries {retries}; N·T = {n * t:g} s",
        f"(commit {commit}, {os.cpu_count()} CPUs shared with other work; bot, simulator and this script share one "
        "event loop; each policy at each p in a fresh world)",
    ]
    for p in plan.bad:
        here = [r for r in results if r.p == p]
        bad = sum(1 for s in pr_set(n, p, plan.pairs, plan.seed) if s.kind == "bad")
        out += [
            "",
            f"p = {p:g} ({bad} bad PRs):",
            f"  {'policy':<13}{'b':>3}{'d':>3}{'R':>3}{'settings':>9}{'drain s':>9}{'/serial':>8}{'model':>7}"
            f"{'/(N·T)':>7}{'runs':>6}{'/merged':>8}{'model':>7}{'wasted':>7}{'live':>5}{'CI':>4}{'bad in':>7}"
            f"{'base':>6}{'good rej':>9}{'pair rej':>9}{'p50 s':>7}{'p95 s':>7}{'load':>10}",
        ]
        for r in here:
            m = models[(p, r.policy)]
            s = r.settings
            head = f"  {r.policy:<13}{s['batch_max']:>3}{s['max_parallel']:>3}{s['flaky_retries']:>3}"
            if r.error is not None:
                out.append(f"{head}  failed: {r.error}")
                continue
            load = (
                f"{r.machine.get('loadavg_1m_before', math.nan):.1f}→{r.machine.get('loadavg_1m_after', math.nan):.1f}"
            )
            out.append(
                f"{head}{('on' if not r.ignored else 'IGNORED'):>9}{r.drain_s:>9.1f}{fmt(r.vs_serial):>8}"
                f"{m.drain_ratio:>7.2f}{fmt(r.drain_ratio):>7}{r.ci_runs:>6}{fmt(r.runs_per_merged):>8}"
                f"{m.runs_per_merged:>7.2f}{r.wasted_runs:>7}{r.most_live:>5}{r.most_at_once:>4}"
                f"{len(r.bad_landed) + len(r.bad_markers_in_base):>7}{('ok' if not r.base_violations else 'BAD'):>6}"
                f"{sum(r.good_rejected.values()):>9}{sum(r.pair_rejected.values()):>9}{fmt(r.wait_p50_s, 1):>7}"
                f"{fmt(r.wait_p95_s, 1):>7}{load:>10}"
            )
        out.append("")
        for r in here:
            if r.error is not None:
                continue
            m = models[(p, r.policy)]
            overhead = f"; beyond CI per run {fmt(r.beyond_ci_per_run_s)} s" if r.settings["max_parallel"] == 1 else ""
            out.append(
                f"  {r.policy} ({POLICIES[r.policy].about}): model {m.how}, drain {m.drain_s:.0f} s, p50 "
                f"{m.wait_median_s:.0f} s; CI runs {r.ci_runs} ({r.ci_red} red, {r.flakes} flaked, {r.retest_runs} "
                f"re-tests) by attempt: " + ", ".join(f"{k} {v}" for k, v in r.runs_by_outcome.items()) + overhead
            )
            out.append(
                f"    bad PRs rejected {r.bad_rejected} of {bad}; bad PRs landed: {r.bad_landed or 'none'}; markers "
                f"in main: {r.bad_markers_in_base or 'none'}; CPU {r.machine.get('cpu_process_s', 0):.0f} s "
                f"process + {r.machine.get('cpu_children_s', 0):.0f} s git/CI"
            )
            if r.ignored:
                out.append(f"    IGNORED by the bot's settings: {', '.join(r.ignored)}")
            if r.base_violations:
                out.append("    base moves not green on themselves: " + "; ".join(r.base_violations[:5]))
            if r.good_rejected:
                out.append("    good PRs rejected: " + ", ".join(f"{k} x{v}" for k, v in r.good_rejected.items()))
            if r.pair_rejected:
                out.append(
                    f"    pair members rejected (≥ 1 of each of {plan.pairs} pairs expected): "
                    + ", ".join(f"{k} x{v}" for k, v in r.pair_rejected.items())
                )
        if identical(here):
            out.append(
                "  NOTE: every policy gave the same result (same CI runs, same PRs merged): the policies had no "
                "effect in this checkout."
            )
    out += [
        "",
        "  b batch_max, d max_parallel (chain depth), R flaky_retries; drain = first /merge → last entry final; "
        "/serial: over serial's drain at that p in this run; model: drain / (N·T) and CI runs per merged PR "
        "expected (depth 1: (1 + f_b·⌈log2 b⌉)/b, f_b = 1 - (1-p)^b·(1-q); chains: bot.queue.adaptive.forecast); "
        "wasted: CI runs of attempts abandoned (not re-tests); live / CI: most candidate branches live and most CI "
        "runs running at once (the depth reached); bad in: "
        "bad PRs merged + markers in the base's final tree; base: every base SHA green on itself; p50/p95: "
        "queued → landed of merged entries",
    ]
    if len(plan.bad) > 1:
        columns = "".join(f"{f'p={p:g}':>15}" for p in plan.bad)
        out += ["", "drain / serial (model in brackets):", f"  {'policy':<13}{columns}"]
        for name in plan.policies:
            cells = []
            for p in plan.bad:
                found = next((x for x in results if x.p == p and x.policy == name), None)
                value = fmt(found.vs_serial) if found is not None and found.error is None else "failed"
                cells.append(f"{value} ({models[(p, name)].drain_ratio:.2f})")
            out.append(f"  {name:<13}" + "".join(f"{cell:>15}" for cell in cells))
    out += ["", "goals:"]
    out += [f"  {g.status:<5} {g.name}: {g.detail}" for g in goals(plan, results)]
    return "\n".join(out)


# -- the plot ----------------------------------------------------------------------------------------

COLOURS = ("#444444", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def plot_svg(plan: Plan, results: Sequence[Result]) -> str:
    """Drain / serial against p as SVG: one solid line per policy (measured; a failed run's point is left out)
    and a dashed one in its colour for its model (drain / (N·T), serial's model being 1)."""
    width, height = 720, 420
    left, right, top, bottom = 64, 170, 48, 56
    ps = sorted(plan.bad)
    x_lo, x_hi = (0.0, max(ps)) if max(ps) > 0 else (0.0, 0.1)
    ordered = sorted((r for r in results if r.error is None and math.isfinite(r.vs_serial)), key=lambda r: r.p)
    measured = {name: [(r.p, r.vs_serial) for r in ordered if r.policy == name] for name in plan.policies}
    models = expectations(plan)
    modelled = {name: [(p, models[(p, name)].drain_ratio) for p in ps] for name in plan.policies}
    values = [v for lines in (measured, modelled) for line in lines.values() for _, v in line if math.isfinite(v)]
    y_hi = math.ceil(max([1.2, *values]) * 5) / 5

    def x_of(p: float) -> float:
        return left + (p - x_lo) / (x_hi - x_lo) * (width - left - right)

    def y_of(v: float) -> float:
        return top + (1 - v / y_hi) * (height - top - bottom)

    def polyline(line: Sequence[tuple[float, float]], colour: str, dashes: str = "") -> str:
        coords = " ".join(f"{x_of(p):.1f},{y_of(v):.1f}" for p, v in line if math.isfinite(v))
        dash = f' stroke-dasharray="{dashes}"' if dashes else ""
        return f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'

    size = f"N={plan.prs}, T={plan.ci_seconds:g} s, {plan.max_parallel} runners, q={plan.flake:g}"
    title = f"merge-bot: drain / serial against p ({size})"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="24" font-size="14">{escape(title)}</text>',
    ]
    for i in range(round(y_hi / 0.2) + 1):
        v = i * 0.2
        y = y_of(v)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#e0e0e0"/>')
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{v:.1f}</text>')
    for p in ps:
        x = x_of(p)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="#e0e0e0"/>')
        out.append(f'<text x="{x:.1f}" y="{height - bottom + 18}" text-anchor="middle">{p * 100:g} %</text>')
    out += [
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
        f'<text x="{(left + width - right) / 2:.1f}" y="{height - 14}" text-anchor="middle">'
        "p (share of bad PRs)</text>",
        f'<text transform="translate(18 {(top + height - bottom) / 2:.1f}) rotate(-90)" text-anchor="middle">'
        "drain time / serial drain time</text>",
    ]
    legend_x = width - right + 16
    for i, name in enumerate(plan.policies):
        colour = COLOURS[i % len(COLOURS)]
        line = measured[name]
        if len(line) > 1:
            out.append(polyline(line, colour))
        out += [f'<circle cx="{x_of(p):.1f}" cy="{y_of(v):.1f}" r="3.5" fill="{colour}"/>' for p, v in line]
        if len(ps) > 1:
            out.append(polyline(modelled[name], colour, "5 4"))
        y = top + 10 + 20 * i
        out += [
            f'<line x1="{legend_x}" y1="{y}" x2="{legend_x + 24}" y2="{y}" stroke="{colour}" stroke-width="2"/>',
            f'<text x="{legend_x + 30}" y="{y + 4}">{escape(name)}</text>',
        ]
    y = top + 10 + 20 * len(plan.policies) + 10
    out += [
        f'<line x1="{legend_x}" y1="{y}" x2="{legend_x + 24}" y2="{y}" stroke="#888888" stroke-width="2" '
        'stroke-dasharray="5 4"/>',
        f'<text x="{legend_x + 30}" y="{y + 4}">model</text>',
        "</svg>",
    ]
    return "\n".join(out) + "\n"


def strict(value: Any) -> Any:
    """NaN and infinity as null (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    return value


# -- entry point -------------------------------------------------------------------------------------


def policies_arg(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in POLICIES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"choose among {', '.join(POLICIES)} (comma-separated), not {text!r}")
    return names


def rates_arg(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(dict.fromkeys(float(part) for part in text.split(",") if part.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers between 0 and 1, not {text!r}") from None
    if not rates or not all(0 <= rate <= 1 for rate in rates):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers between 0 and 1, not {text!r}")
    return rates


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/throughput.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prs", type=int, default=100, help="PRs queued at once, N (default 100)")
    parser.add_argument("--ci-seconds", type=float, default=2.0, help="CI duration T, s (default 2)")
    parser.add_argument(
        "--bad", type=rates_arg, default=(0.10,), help="fraction p of bad PRs, or a comma-separated sweep (0.10)"
    )
    parser.add_argument("--pairs", type=int, default=0, help="pairs green alone, red together (default 0)")
    parser.add_argument("--flake", type=float, default=0.0, help="chance q a CI run fails at random (default 0)")
    parser.add_argument("--seed", type=int, default=12, help="draws the bad PRs, the pairs and the flakes (12)")
    parser.add_argument(
        "--max-parallel",
        "--runners",
        dest="max_parallel",
        type=int,
        default=8,
        help="the chains' max_parallel and every policy's CI runners, M (default 8)",
    )
    parser.add_argument(
        "--flaky-retries",
        type=int,
        help="MERGE_BOT_FLAKY_RETRIES for every policy (default: 0 for serial, batch4, batch8; 1 for the others)",
    )
    parser.add_argument(
        "--policies",
        type=policies_arg,
        default=DEFAULT_POLICIES,
        help=f"comma-separated, among {','.join(POLICIES)} (default {','.join(DEFAULT_POLICIES)})",
    )
    parser.add_argument("--gate-poll-seconds", type=float, default=5.0, help="MERGE_BOT_GATE_POLL_SECONDS (5)")
    parser.add_argument("--timeout", type=float, help="deadline per world's drain, s (default 120 + N·(T + 10))")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server's maintenance database (a fresh database per world is created there and "
        "dropped); default: an embedded server per world in a temporary directory",
    )
    parser.add_argument("--plot", type=Path, help="write drain / serial against p as SVG to this file")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.add_argument("--json-file", type=Path, help="also write the JSON results to this file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.prs < 1 or args.ci_seconds <= 0 or args.pairs < 0 or args.gate_poll_seconds <= 0:
        parser.error("need --prs >= 1, --ci-seconds > 0, --pairs >= 0, --gate-poll-seconds > 0")
    if not 1 <= args.max_parallel <= 64:
        parser.error("need 1 <= --max-parallel <= 64 (the bot's max_parallel bounds)")
    if args.flaky_retries is not None and not 0 <= args.flaky_retries <= 5:
        parser.error("need 0 <= --flaky-retries <= 5 (the bot's flaky_retries bounds)")
    if not 0 <= args.flake < 1:
        parser.error("need 0 <= --flake < 1")
    for option, path in (("--plot", args.plot), ("--json-file", args.json_file)):
        if path is not None and not path.resolve().parent.is_dir():
            parser.error(f"{option} {path}: the directory {path.resolve().parent} does not exist")
    plan = Plan(
        prs=args.prs,
        ci_seconds=args.ci_seconds,
        bad=args.bad,
        pairs=args.pairs,
        flake=args.flake,
        seed=args.seed,
        max_parallel=args.max_parallel,
        flaky_retries=args.flaky_retries,
        policies=args.policies,
        gate_poll_seconds=args.gate_poll_seconds,
        timeout_s=args.timeout or 120 + args.prs * (args.ci_seconds + 10),
        database_url=args.database_url,
    )
    try:
        for p in plan.bad:
            pr_set(plan.prs, p, plan.pairs, plan.seed)
    except BenchError as exc:
        parser.error(str(exc))
    results: list[Result] = []
    for p in plan.bad:
        for policy in plan.policies:
            chosen = plan.settings(policy)
            shown = " ".join(f"{name}={env_value(value)}" for name, value in chosen.items())
            progress(f"policy {policy} at p={p:g} ({shown}), in a fresh world")
            try:
                results.append(run_world(plan, policy, p))
            except (BenchError, TimeoutError, SimApiError, OSError) as exc:
                progress(f"{policy} at p={p:g} failed: {exc!r}")
                results.append(Result(policy, p, chosen, error=repr(exc)))
    against_serial(results)
    commit = checkout_commit()
    judged = goals(plan, results)
    report = {
        "plan": asdict(plan) | {"database_url": None},
        "commit": commit,
        "policies": {name: asdict(POLICIES[name]) | {"settings": plan.settings(name)} for name in plan.policies},
        "models": [{"p": p, "policy": name} | asdict(m) for (p, name), m in expectations(plan).items()],
        "results": [asdict(r) for r in results],
        "goals": [asdict(g) for g in judged],
    }
    text = json.dumps(strict(report), indent=2, ensure_ascii=False)
    if args.json_file is not None:
        args.json_file.write_text(text + "\n")
    if args.plot is not None:
        args.plot.write_text(plot_svg(plan, results))
        progress(f"wrote the plot to {args.plot}")
    if args.json:
        print(text)
    else:
        print(render(plan, results, commit))
    failed = any(r.error is not None or r.unsafe for r in results) or any(g.hard and g.status == "FAIL" for g in judged)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
