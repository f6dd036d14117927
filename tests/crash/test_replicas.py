"""Three bot processes on one database, five repositories with ten PRs each (docs/faults.md #4).

The three replicas sit behind one webhook URL (a round-robin balancer, as in a real deployment), so each
delivery lands in whichever process is next and every gate is woken through the database. Every PR must be
merged exactly once, and every train's active attempts must form one chain from its base tip whichever
process works it (``chain_violations``: sampled from the database while the queue drains, and from the
simulator's push log). Two runs:

* ``serial``: one attempt at a time (``max_parallel`` 1): never more than one candidate under test per repository
  (a landed candidate's branch may live on while the next one is pushed, until its bookkeeping deletes it).
* ``chains``: speculative chains up to three deep (``max_parallel`` 3) with a CI run of two seconds, so that
  chains form, and ``flaky_retries`` 1: the first CI run of two of the repositories fails once (injected),
  and that PR, red alone, is re-tested on the same commit and lands; at most three live staging branches per
  repository, and more than one somewhere.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

from bot.db.models import Attempt
from tests.crash.conftest import MakeWorld, Report
from tests.crash.harness import ChainWatch, WebhookBalancer, chain_violations, violations
from tests.crash.invariants import effective_merge_calls, most_live_staging

pytestmark = pytest.mark.slow
REPOS = ("alpha", "bravo", "charlie", "delta", "echo")
PRS_PER_REPO = 10


@dataclass(frozen=True)
class Run:
    most: int  # max_parallel: the most attempts under test at once per train
    ci_delay: float = 0.0
    flaky: tuple[str, ...] = ()  # repositories whose first CI run fails once
    settings: dict[str, str] = field(default_factory=dict)


RUNS = {
    "serial": Run(1),
    "chains": Run(
        3,
        ci_delay=2.0,
        flaky=("alpha", "charlie"),
        settings={"MERGE_BOT_MAX_PARALLEL": "3", "MERGE_BOT_FLAKY_RETRIES": "1"},
    ),
}


@pytest.mark.parametrize("run", list(RUNS))
async def test_three_replicas_five_repositories_each_pr_merged_once(
    make_world: MakeWorld, report: Report, run: str
) -> None:
    plan = RUNS[run]
    world = await make_world(repos=REPOS, ci_delay=plan.ci_delay)
    numbers = {
        repo: await world.open_prs(repo, [(f"pr-{i}", {f"file-{i}.txt": f"{repo} {i}\n"}) for i in range(PRS_PER_REPO)])
        for repo in world.repos
    }
    for name in plan.flaky:
        await world.sim.fault(kind="ci", action="fail", repo=f"{world.owner.login}/{name}", count=1)
    balancer = WebhookBalancer([])  # its targets are the replicas, which need its URL first
    url = await balancer.start()
    try:
        replicas = [world.bot_process(f"replica-{n}", external_url=url, extra=plan.settings) for n in range(3)]
        balancer.targets[:] = [f"http://{r.env['MERGE_BOT_LISTEN']}" for r in replicas]
        # One at a time until the webhook exists, so that two do not both create it.
        await replicas[0].start()
        await world.ready(replicas[0], url=url)
        await asyncio.gather(*(replica.start() for replica in replicas[1:]))
        await world.reconciled()
        async with ChainWatch(world.engine) as watch:
            for i in range(PRS_PER_REPO):  # interleaved, so that every train has work from the start
                for repo in world.repos:
                    await world.queue(repo, numbers[repo][i])
            loop = asyncio.get_running_loop()
            started = loop.time()
            outcomes = await world.settled(len(REPOS) * PRS_PER_REPO, within=240)
            drained = loop.time() - started
    finally:
        await balancer.close()

    assert Counter(outcomes.values()) == Counter({"merged": len(REPOS) * PRS_PER_REPO}), outcomes
    await world.no_staging_left()
    log = await world.sim.log()
    assert all(count == 1 for count in effective_merge_calls(log).values())
    assert len(effective_merge_calls(log)) == len(REPOS) * PRS_PER_REPO
    staging = most_live_staging(log)
    # One more than max_parallel: as a candidate lands, the next attempt is pushed before the landed ones' refs go
    # (their bookkeeping is off the critical path). ``violations`` below holds the strict rule, from what is reachable.
    assert set(staging) == set(world.repos) and max(staging.values()) <= plan.most + 1, staging
    if plan.most > 1:
        assert max(staging.values()) > 1, staging  # chains did form: several candidates under test at once
    assert await violations(world, most=plan.most) == []
    assert await chain_violations(world, watch, most=plan.most) == []
    assert all(replica.running and len(replica.lives) == 1 for replica in replicas)
    async with world.engine.connect() as connection:
        found = await connection.execute(select(Attempt.reason_detail).where(Attempt.reason == "retried"))
        retried = [detail.get("outcome") for (detail,) in found]
    assert retried == ["flaky"] * len(plan.flaky), retried  # each injected red re-tested once, then landed

    attempts = {r.name: sum(1 for e in r.life.events() if e.get("event") == "gate.attempt_started") for r in replicas}
    report(
        {
            "kind": "replicas",
            "run": run,
            "processes": len(replicas),
            "repositories": len(REPOS),
            "prs": len(REPOS) * PRS_PER_REPO,
            "drain_s": drained,
            "attempts_per_process": attempts,
            "webhooks_per_process": [balancer.forwarded[t] for t in balancer.targets],
            "most_live_staging_per_repo": max(staging.values()),
            "longest_chain": watch.longest,
            "retried": len(retried),
            "violations": 0,
        }
    )
