"""Three bot processes on one database, five repositories with ten PRs each (docs/faults.md #4).

The three replicas sit behind one webhook URL (a round-robin balancer, as in a real deployment), so each
delivery lands in whichever process is next and every gate is woken through the database. Every PR must be
merged exactly once, and no train may ever run two attempts at once: from the simulator's push log, at most
one live ``merge-bot/*`` staging branch per repository at any moment.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.crash.conftest import MakeWorld, Report
from tests.crash.harness import WebhookBalancer, violations
from tests.crash.invariants import effective_merge_calls, most_live_staging

pytestmark = pytest.mark.slow
REPOS = ("alpha", "bravo", "charlie", "delta", "echo")
PRS_PER_REPO = 10


async def test_three_replicas_five_repositories_each_pr_merged_once(make_world: MakeWorld, report: Report) -> None:
    world = await make_world(repos=REPOS)
    numbers = {
        repo: await world.open_prs(repo, [(f"pr-{i}", {f"file-{i}.txt": f"{repo} {i}\n"}) for i in range(PRS_PER_REPO)])
        for repo in world.repos
    }
    balancer = WebhookBalancer([])  # its targets are the replicas, which need its URL first
    url = await balancer.start()
    try:
        replicas = [world.bot_process(f"replica-{n}", external_url=url) for n in range(3)]
        balancer.targets[:] = [f"http://{r.env['MERGE_BOT_LISTEN']}" for r in replicas]
        # One at a time until the webhook exists, so that two do not both create it.
        await replicas[0].start()
        await world.ready(replicas[0], url=url)
        await asyncio.gather(*(replica.start() for replica in replicas[1:]))
        await world.reconciled()
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
    assert staging == {repo: 1 for repo in world.repos}, staging
    assert await violations(world) == []
    assert all(replica.running and len(replica.lives) == 1 for replica in replicas)

    attempts = {r.name: sum(1 for e in r.life.events() if e.get("event") == "gate.attempt_started") for r in replicas}
    report(
        {
            "kind": "replicas",
            "processes": len(replicas),
            "repositories": len(REPOS),
            "prs": len(REPOS) * PRS_PER_REPO,
            "drain_s": drained,
            "attempts_per_process": attempts,
            "webhooks_per_process": [balancer.forwarded[t] for t in balancer.targets],
            "most_live_staging_per_repo": max(staging.values()),
            "violations": 0,
        }
    )
