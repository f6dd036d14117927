"""The serial queue end to end: bot + simulator + real PostgreSQL, CI running the repository's script."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from gitea_sim.testing import running_sim
from tests.e2e.conftest import World, make_world


async def test_queued_pr_lands_as_the_tested_commit(world: World) -> None:
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await world.queue(number)
    entry = await world.final_entry(number)
    assert entry.state == "merged", entry
    main = await world.main_sha()
    assert main == entry.merged_sha
    green = [s for s in await world.statuses(main) if s["context"] == "ci/test"]
    assert green and green[0]["status"] == "success"
    pr = await world.sim.get_pr(world.repo, number)
    assert pr["merged"] is True
    await world.says(number, "Merged by the queue", main)
    branches = await world.sim.api("GET", f"/repos/{world.repo}/branches")
    assert not [b["name"] for b in branches if b["name"].startswith("merge-bot/")]  # the staging ref is gone
    own = [s for s in await world.statuses(pr["head"]["sha"]) if s["context"] == "merge-bot"]
    assert own[0]["status"] == "success" and own[0]["description"].startswith("merged as")
    assert own[0]["target_url"].endswith(f"/queue/{world.repo}/pull/{number}")


async def test_semantic_conflict_second_pr_is_rejected(world: World) -> None:
    first = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    second = await world.open_pr("feature-b", {"feature-b.flag": "b\n"})
    await world.queue(first)
    await world.queue(second)
    a = await world.final_entry(first)
    b = await world.final_entry(second)
    assert a.state == "merged"
    assert b.state == "failed"
    assert b.reason == "checks_failed"
    main = await world.main_sha()
    assert main == a.merged_sha
    await world.says(second, "Not merged", "ci/test")


async def test_two_bot_processes_never_run_two_attempts_at_once(world: World) -> None:
    from aiohttp import web

    from bot.app import create_app
    from bot.db.session import make_engine
    from gitea_sim.testing import free_port

    # A second replica: same database, same external URL and secret, its own engine, port and gates.
    port = free_port()
    replica = world.settings.model_copy(update={"listen": world.settings.listen.model_copy(update={"port": port})})
    engine = make_engine(world.engine.url.render_as_string(hide_password=False))
    runner = web.AppRunner(create_app(replica, engine=engine), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        numbers = [await world.open_pr(f"feature-{n}", {f"file-{n}.txt": f"{n}\n"}) for n in range(4)]
        for number in numbers:
            await world.queue(number)
        for number in numbers:
            assert (await world.final_entry(number)).state == "merged"
    finally:
        await runner.cleanup()
        await engine.dispose()
    # Never two candidates under test at once: a landed one (the base's tip) may stay until its bookkeeping,
    # since the next candidate goes under CI first.
    live: dict[str, str] = {}
    most, tip = 0, ""
    for push in await world.sim.log("push"):
        if push["ref"] == "refs/heads/main":
            tip = push["after"]
        if not push["ref"].startswith("refs/heads/merge-bot/"):
            continue
        if set(push["after"]) == {"0"}:
            live.pop(push["ref"], None)
        else:
            live[push["ref"]] = push["after"]
        most = max(most, len([sha for sha in live.values() if sha != tip]))
    assert most == 1
    hooks = await world.sim.api("GET", f"/repos/{world.repo}/hooks", token=world.owner.token)
    assert len([hook for hook in hooks if hook["config"]["url"] == world.settings.webhook_url]) == 1


async def test_candidate_checks_are_mirrored_onto_the_pr(world: World) -> None:
    from tests.e2e.conftest import eventually

    await world.sim.set_ci(world.repo, "sh ci.sh", context="ci/test", delay_s=0.5)
    number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    await world.sim.push_commit(world.repo, world.owner, "main", {"other.txt": "o\n"}, message="Other")
    head = (await world.sim.get_pr(world.repo, number))["head"]["sha"]
    await world.queue(number)
    assert (await world.final_entry(number)).state == "merged"

    async def mirrored() -> bool:
        states = [s["status"] for s in await world.statuses(head) if s["context"] == "merge-bot/ci/test"]
        return "success" in states

    await eventually(mirrored, within=10, what="merge-bot/ci/test on the PR head")


async def test_forgejo_without_status_webhooks(engine: AsyncEngine, tmp_path: Path) -> None:
    """Forgejo sends no status events and signs with X-Forgejo-Signature: the gate polls the statuses."""
    async with running_sim(tmp_path, flavour="forgejo") as sim:
        async for world in make_world(sim, engine, tmp_path):
            number = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
            await sim.push_commit(world.repo, world.owner, "main", {"other.txt": "o\n"}, message="Other")
            await world.queue(number)
            entry = await world.final_entry(number)
            assert entry.state == "merged"
            assert await world.main_sha() == entry.merged_sha
            assert not [d for d in await sim.log("delivery") if d.get("event") == "status"]
