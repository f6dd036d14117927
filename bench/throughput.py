"""Queue throughput under failures (issue 12): serial against batch + bisection, measured next to their models.

The PR set
    N PRs (``--prs``, default 100), each adding its own file ``feature-<n>.txt``. A fraction p (``--bad``,
    default 0.10) of them are bad: they also add a marker file ``bad-<n>``. ``--pairs K`` picks K pairs of
    other PRs that are green alone and red together (PR a adds ``pair-<k>-a``, PR b ``pair-<k>-b``). Which
    PRs are bad or paired is drawn from ``--seed``, so every policy gets the same set.

The CI
    The simulator's CI (``/_sim/ci``) with ``delay_s = T`` (``--ci-seconds``, default 2: an ``asyncio.sleep``
    in the simulator, no process), then a real script on the checked-out candidate: red when the tree holds a
    ``bad-*`` marker or both files of a pair, else red at random with probability q (``--flake``, default 0):
    a flake is ``cksum("<seed>:<CI_RUN_ID>") mod 10^6 < q·10^6``, deterministic from the seed and the run's
    ordinal in its world. CI runs only on ``merge-bot/**`` (the bot's candidates), so CI runs counted are
    candidate runs, and it has ``--runners`` runners (default 4): runs beyond that wait, pending, as in life.

The measurement
    For each policy (``--policies``, default all three), in a fresh world (embedded PostgreSQL or a fresh
    database on ``--database-url``, simulator, bot; the bot's app in this event loop, on 127.0.0.1):
    all N PRs opened, then N ``/merge`` comments posted at once, then the clock runs until every entry is
    final (merged, failed or cancelled).

    serial    ``MERGE_BOT_BATCH_MAX=1``
    batch4    ``MERGE_BOT_BATCH_MAX=4`` (bisecting a red batch)
    batch8    ``MERGE_BOT_BATCH_MAX=8``

    every one with ``MERGE_BOT_BATCH_WAIT_SECONDS=0`` (all are queued at once), through
    ``bot.config.load_settings`` as bench/queue.py does. The report's "batching" column checks that the
    settings the bot got carry the policy's ``batch_max`` (``IGNORED`` would mean a bot without batches).

    Per policy:
    drain / (N·T)       first ``/merge`` posted → last entry final (its ``finished_at``), over N·T
    CI runs             CI runs that reported in the drain (simulator log), per queued and per merged PR
    bad PRs landed      bad PRs (or second halves of pairs) whose entries merged, and markers in the base
                        branch's final tree (``bad-*``, both files of a pair); must be 0, else exit status 1
    good PRs rejected   PRs with no marker whose entries did not merge, by ``entries.reason`` (pair members
                        separately: one of each pair has to be rejected when both are tested together)
    queued → landed     median of ``finished_at - queued_at`` over merged entries
    machine             1-min load average before and after, CPU seconds (this process; git and CI children)

The models (printed next to the measurement)
    s = 1 - p is the chance a PR is good; a batch of b is red with probability f_b = 1 - s^b·(1 - q)
    (q = 0 gives Mergify's calculator). Bisection of a red batch costs ⌈log2 b⌉ extra runs (Mergify: one run
    per level, assuming one culprit per red batch), so
        CI runs per PR      (1 + f_b·⌈log2 b⌉) / b            serial (b = 1): 1
    Time model: one candidate tested at a time (the staging strategy without speculation), every run taking
    T and the bot's own work taken as nothing, so the N/b batches each cost T plus f_b·⌈log2 b⌉·T of
    bisection levels, one after another:
        drain / (N·T)       (1 + f_b·⌈log2 b⌉) / b            serial: 1 (drain N·T)
        queued → landed     about half the drain (PRs land evenly through it)
    The model ignores pairs (a red pair costs like a bad PR), the bot's and the simulator's overhead per run
    (bench/queue.py measures it: ~0.5 s per PR on this machine) and runners (one run at a time never needs
    more than one). The report gives "beyond CI per run" = (drain - runs·T) / runs for that overhead.

Run it (from the repository root, with the venv active)::

    python bench/throughput.py                               # N = 100, T = 2 s, p = 0.10, all policies
    python bench/throughput.py --prs 12 --ci-seconds 0.5     # a quick look
    python bench/throughput.py --pairs 3 --flake 0.02 --policies serial,batch4 --json

It stops by itself (every wait has a deadline), stops the bot, the simulator and the embedded PostgreSQL and
removes its temporary directories, also on errors. Only 127.0.0.1 is contacted. Exit status 1 when a bad PR
landed or a run failed, else 0 (good PRs rejected, e.g. by flakes, are reported, not failed on).
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
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness import BenchError, checkout_commit, eventually, fresh_database, percentile, progress, serving
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import logs
from bot.app import create_app
from bot.config import Settings, load_settings
from bot.db.models import DeliveryState, Entry, PullRequest, WebhookDelivery
from bot.db.session import make_engine
from gitea_sim.gitrepo import run_git
from gitea_sim.testing import SimApiError, SimHandle, SimUser, free_port, running_sim

CONTEXT = "ci/test"
CI_BRANCHES = ["merge-bot/**"]
FINAL_STATES = ("merged", "failed", "cancelled")
POLICIES: dict[str, int] = {"serial": 1, "batch4": 4, "batch8": 8}  # name → MERGE_BOT_BATCH_MAX
FLAKE_SCALE = 1_000_000


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


# -- one world ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    prs: int
    ci_seconds: float
    bad: float
    pairs: int
    flake: float
    seed: int
    runners: int
    policies: tuple[str, ...]
    gate_poll_seconds: float
    timeout_s: float
    database_url: str | None


@dataclass
class Result:
    policy: str
    batch_max: int
    applied: bool  # the bot's settings took MERGE_BOT_BATCH_MAX (Settings has batch_max and it is that value)
    drain_s: float = math.nan
    drain_ratio: float = math.nan
    ci_runs: int = 0
    ci_red: int = 0
    flakes: int = 0
    merged: int = 0
    runs_per_pr: float = math.nan
    runs_per_merged: float = math.nan
    beyond_ci_per_run_s: float = math.nan
    bad_landed: list[int] = field(default_factory=list)  # PR numbers
    bad_markers_in_base: list[str] = field(default_factory=list)
    good_rejected: dict[str, int] = field(default_factory=dict)  # reason → count (plain good PRs)
    pair_rejected: dict[str, int] = field(default_factory=dict)  # reason → count (members of pairs)
    bad_rejected: int = 0
    wait_median_s: float = math.nan
    wait_p90_s: float = math.nan
    merged_numbers: list[int] = field(default_factory=list)
    machine: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class EntryRow:
    number: int
    state: str
    reason: str | None
    queued_at: float
    finished_at: float | None


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


def bot_settings(sim: SimHandle, bot: SimUser, repo: str, data_dir: Path, plan: Plan, batch_max: int) -> Settings:
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
            "MERGE_BOT_BATCH_MAX": str(batch_max),
            "MERGE_BOT_BATCH_WAIT_SECONDS": "0",
            "MERGE_BOT_MAX_PARALLEL": "1",  # one candidate at a time (the chains' benchmark comes with issue 13)
            "MERGE_BOT_FLAKY_RETRIES": "0",
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


async def measure_world(plan: Plan, policy: str, workdir: Path, log_path: Path) -> Result:
    batch_max = POLICIES[policy]
    specs = pr_set(plan.prs, plan.bad, plan.pairs, plan.seed)
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
                repo, "sh ci.sh", context=CONTEXT, delay_s=plan.ci_seconds, branches=CI_BRANCHES, runners=plan.runners
            )
            settings = bot_settings(sim, bot, repo, workdir / "bot-data", plan, batch_max)
            applied = getattr(settings, "batch_max", None) == batch_max
            result = Result(policy, batch_max, applied)
            with log_path.open("w") as log_stream:
                logs.configure("info", "json", settings.secrets(), stream=log_stream)
                app = create_app(settings, database_url=database_url)
                async with serving(app, settings.listen.port):
                    await eventually(lambda: bot_hook(sim, repo, owner, settings.webhook_url), 30, "the bot's webhook")
                    progress(f"{policy}: opening {plan.prs} PRs")
                    by_number = await open_prs(sim, repo, dev, specs)
                    await sim.wait_idle(60 + plan.prs)
                    await eventually(lambda: quiet(sim, engine), 120, "the simulator and the bot's inbox to go quiet")
                    since = last_seq(sim)
                    progress(f"{policy}: queueing {plan.prs} PRs at once; CI takes {plan.ci_seconds:g} s")
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
                    progress(f"{policy}: every entry is final; reading the logs and the base branch")
                    ci_done = [
                        e
                        for e in await sim.log(kind="ci", since=since)
                        if e.get("repo") == repo and e.get("phase") == "done"
                    ]
                    flaky = sum(1 for run in sim.sim.ci.runs.values() if "flake: run" in run.output)
                    tree = await base_tree(sim, repo, owner)
        finally:
            await engine.dispose()
    summarise(result, plan, started, rows, by_number, ci_done, flaky, tree)
    return result


async def bot_hook(sim: SimHandle, repo: str, owner: SimUser, url: str) -> bool:
    hooks: list[dict[str, Any]] = await sim.api("GET", f"/repos/{repo}/hooks", token=owner.token)
    return sum(1 for hook in hooks if hook["config"]["url"] == url) == 1


def summarise(
    result: Result,
    plan: Plan,
    started: float,
    rows: Sequence[EntryRow],
    by_number: dict[int, PrSpec],
    ci_done: Sequence[dict[str, Any]],
    flaky: int,
    tree: Sequence[str],
) -> None:
    n, t = plan.prs, plan.ci_seconds
    result.drain_s = max(r.finished_at or started for r in rows) - started
    result.drain_ratio = result.drain_s / (n * t) if t > 0 else math.nan
    result.ci_runs = len(ci_done)
    result.ci_red = sum(1 for e in ci_done if e.get("state") != "success")
    result.flakes = flaky
    merged = [r for r in rows if r.state == "merged"]
    result.merged = len(merged)
    result.merged_numbers = sorted(r.number for r in merged)
    result.runs_per_pr = result.ci_runs / n
    result.runs_per_merged = result.ci_runs / len(merged) if merged else math.inf
    if result.ci_runs:
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
    result.bad_markers_in_base = markers_in(tree)
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
    result.wait_median_s = statistics.median(waits) if waits else math.nan
    result.wait_p90_s = percentile(waits, 90)


def run_policy(plan: Plan, policy: str) -> Result:
    """One policy in its own temporary directory (database, simulator, bot), removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-throughput-{policy}-"))
    try:

        async def bounded() -> Result:
            async with asyncio.timeout(plan.timeout_s + 600):  # the backstop; every wait has its own deadline
                return await measure_world(plan, policy, workdir, workdir / "bot.jsonl")

        return asyncio.run(bounded())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# -- output ------------------------------------------------------------------------------------------


def models_for(plan: Plan) -> dict[str, Model]:
    return {p: model(POLICIES[p], plan.bad, plan.flake, plan.prs, plan.ci_seconds) for p in plan.policies}


def identical(results: Sequence[Result]) -> bool:
    done = [r for r in results if r.error is None]
    return len(done) > 1 and all(
        (r.ci_runs, r.merged_numbers) == (done[0].ci_runs, done[0].merged_numbers) for r in done[1:]
    )


def fmt(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def render(plan: Plan, results: Sequence[Result], commit: str) -> str:
    n, t = plan.prs, plan.ci_seconds
    specs = pr_set(plan.prs, plan.bad, plan.pairs, plan.seed)
    bad = sum(1 for s in specs if s.kind == "bad")
    models = models_for(plan)
    out = [
        f"merge-bot throughput: {n} PRs queued at once ({bad} bad, {plan.pairs} red-together pairs, flake rate "
        f"{plan.flake:g}, seed {plan.seed}), CI {t:g} s on merge-bot/** with {plan.runners} runners; N·T = "
        f"{n * t:g} s",
        f"(commit {commit}, {os.cpu_count()} CPUs shared with other work; bot, simulator and this script share one "
        "event loop; each policy in a fresh world)",
        "",
        f"  {'policy':<9}{'batching':>9}{'drain s':>9}{'/(N·T)':>8}{'model':>8}{'runs':>6}{'/PR':>6}{'model':>7}"
        f"{'/merged':>8}{'merged':>7}{'bad in':>7}{'good rej':>9}{'pair rej':>9}{'wait p50':>9}{'model':>7}"
        f"{'load':>10}",
    ]
    for r in results:
        m = models[r.policy]
        if r.error is not None:
            out.append(f"  {r.policy:<9}{'':>9}  failed: {r.error}")
            continue
        load = f"{r.machine.get('loadavg_1m_before', math.nan):.1f}→{r.machine.get('loadavg_1m_after', math.nan):.1f}"
        out.append(
            f"  {r.policy:<9}{('on' if r.applied else 'IGNORED'):>9}{r.drain_s:>9.1f}{fmt(r.drain_ratio):>8}"
            f"{m.drain_ratio:>8.2f}{r.ci_runs:>6}{r.runs_per_pr:>6.2f}{m.runs_per_pr:>7.2f}{fmt(r.runs_per_merged):>8}"
            f"{r.merged:>7}{len(r.bad_landed) + len(r.bad_markers_in_base):>7}{sum(r.good_rejected.values()):>9}"
            f"{sum(r.pair_rejected.values()):>9}{fmt(r.wait_median_s, 1):>9}{m.wait_median_s:>7.1f}{load:>10}"
        )
    out += [
        "",
        "  drain = first /merge → last entry final; model: (1 + f_b·⌈log2 b⌉)/b with f_b = 1 - s^b·(1 - q), "
        f"s = 1 - p = {1 - plan.bad:g}; runs = CI runs reported in the drain (all on candidates); bad in = bad "
        "PRs merged + markers in the base's final tree; wait = queued_at → finished_at of merged entries (s)",
        "",
    ]
    for r in results:
        if r.error is not None:
            continue
        m = models[r.policy]
        out.append(
            f"  {r.policy}: batch {r.batch_max} (red-batch chance f_b {m.red_batch:.3f}, {m.levels} bisection "
            f"levels); CI runs {r.ci_runs} ({r.ci_red} red, {r.flakes} flaked); beyond CI per run "
            f"{fmt(r.beyond_ci_per_run_s)} s; wait p90 {fmt(r.wait_p90_s, 1)} s; "
            f"CPU {r.machine.get('cpu_process_s', 0):.0f} s process + {r.machine.get('cpu_children_s', 0):.0f} s git/CI"
        )
        out.append(
            f"    bad PRs rejected {r.bad_rejected} of {bad}; bad PRs landed: {r.bad_landed or 'none'}; markers "
            f"in main: {r.bad_markers_in_base or 'none'}"
        )
        if r.good_rejected:
            out.append("    good PRs rejected: " + ", ".join(f"{k} x{v}" for k, v in r.good_rejected.items()))
        if r.pair_rejected:
            out.append(
                f"    pair members rejected (≥ 1 of each of {plan.pairs} pairs expected): "
                + ", ".join(f"{k} x{v}" for k, v in r.pair_rejected.items())
            )
    ignored = [r.policy for r in results if r.error is None and not r.applied and r.batch_max > 1]
    if ignored:
        out += [
            "",
            f"  NOTE: MERGE_BOT_BATCH_MAX is not a setting of this bot yet (load_settings ignored it): "
            f"{', '.join(ignored)} ran serially.",
        ]
    if identical(results):
        out.append(
            "  NOTE: every policy gave the same result (same CI runs, same PRs merged): the batch policy had "
            "no effect in this checkout."
        )
    return "\n".join(out)



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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/throughput.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prs", type=int, default=100, help="PRs queued at once, N (default 100)")
    parser.add_argument("--ci-seconds", type=float, default=2.0, help="CI duration T, s (default 2)")
    parser.add_argument("--bad", type=float, default=0.10, help="fraction p of bad PRs (default 0.10)")
    parser.add_argument("--pairs", type=int, default=0, help="pairs green alone, red together (default 0)")
    parser.add_argument("--flake", type=float, default=0.0, help="chance q a CI run fails at random (default 0)")
    parser.add_argument("--seed", type=int, default=12, help="draws the bad PRs, the pairs and the flakes (12)")
    parser.add_argument("--runners", type=int, default=4, help="the simulator CI's runners (default 4)")
    parser.add_argument(
        "--policies", type=policies_arg, default=tuple(POLICIES), help="comma-separated subset of serial,batch4,batch8"
    )
    parser.add_argument("--gate-poll-seconds", type=float, default=5.0, help="MERGE_BOT_GATE_POLL_SECONDS (5)")
    parser.add_argument("--timeout", type=float, help="deadline per policy's drain, s (default 120 + N·(T + 10))")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server's maintenance database (a fresh database per policy is created there and "
        "dropped); default: an embedded server per policy in a temporary directory",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.add_argument("--json-file", type=Path, help="also write the JSON results to this file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.prs < 1 or args.ci_seconds <= 0 or args.runners < 1 or args.pairs < 0 or args.gate_poll_seconds <= 0:
        parser.error("need --prs >= 1, --ci-seconds > 0, --runners >= 1, --pairs >= 0, --gate-poll-seconds > 0")
    if not 0 <= args.bad <= 1 or not 0 <= args.flake < 1:
        parser.error("need 0 <= --bad <= 1 and 0 <= --flake < 1")
    plan = Plan(
        prs=args.prs,
        ci_seconds=args.ci_seconds,
        bad=args.bad,
        pairs=args.pairs,
        flake=args.flake,
        seed=args.seed,
        runners=args.runners,
        policies=args.policies,
        gate_poll_seconds=args.gate_poll_seconds,
        timeout_s=args.timeout or 120 + args.prs * (args.ci_seconds + 10),
        database_url=args.database_url,
    )
    try:
        pr_set(plan.prs, plan.bad, plan.pairs, plan.seed)
    except BenchError as exc:
        parser.error(str(exc))
    results: list[Result] = []
    for policy in plan.policies:
        progress(f"policy {policy} (MERGE_BOT_BATCH_MAX={POLICIES[policy]}), in a fresh world")
        try:
            results.append(run_policy(plan, policy))
        except (BenchError, TimeoutError, SimApiError, OSError) as exc:
            progress(f"{policy} failed: {exc!r}")
            results.append(Result(policy, POLICIES[policy], False, error=repr(exc)))
    commit = checkout_commit()
    report = {
        "plan": asdict(plan) | {"database_url": None},
        "commit": commit,
        "models": {name: asdict(m) for name, m in models_for(plan).items()},
        "results": [asdict(r) for r in results],
        "identical_results": identical(results),
    }
    text = json.dumps(strict(report), indent=2, ensure_ascii=False)
    if args.json_file is not None:
        args.json_file.write_text(text + "\n")
    if args.json:
        print(text)
    else:
        print(render(plan, results, commit))
    failed = any(r.error is not None or r.bad_landed or r.bad_markers_in_base for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
