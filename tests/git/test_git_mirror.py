"""The cached bare mirror: created once, fetched, and pushes fenced by expected SHAs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.git.candidates import Built, CandidateBuilder
from bot.git.mirror import (
    MirrorCache,
    Pushed,
    Rejected,
    Rejection,
    mirror_name,
    parse_push_porcelain,
)
from bot.git.runner import GitError, GitRunner

from .gitrepo import COMMITTER_DATE, Repo

STAGING = "refs/heads/merge-bot/main/1"


@pytest.fixture
def remote(tmp_path: Path, repo: Repo) -> Repo:
    """A bare 'forge' repository with main (base, m1) and feature (f1) pushed from ``repo``."""
    bare = Repo(tmp_path / "remote" / "owner" / "repo.git", bare=True)
    repo.commit("base", {"a.txt": "a\n"})
    repo.checkout("main", new="feature")
    repo.commit("f1", {"b.txt": "b\n"})
    repo.checkout("main")
    repo.commit("m1", {"a.txt": "a\nmain\n"})
    repo.git("push", "--quiet", str(bare.path), "main", "feature", "feature:refs/pull/1/head")
    return bare


@pytest.fixture
def cache(tmp_path: Path, runner: GitRunner) -> MirrorCache:
    return MirrorCache(runner, tmp_path / "data" / "mirrors")


def url(remote: Repo) -> str:
    return f"file://{remote.path}"


async def test_ensure_creates_the_mirror_once_with_the_branches(cache: MirrorCache, remote: Repo) -> None:
    mirror = await cache.ensure(url(remote))
    (mirror.path / "marker").write_text("still here")
    again = await cache.ensure(url(remote))

    assert again.path == mirror.path == cache.data_dir / mirror_name(url(remote))
    assert (again.path / "marker").exists()
    assert await mirror.resolve("refs/heads/main") == remote.rev("main")
    assert await mirror.resolve("refs/heads/feature") == remote.rev("feature")
    assert await mirror.resolve("refs/pull/1/head") is None
    assert mirror.path.name.startswith("owner_repo-")


async def test_concurrent_ensure_agrees_on_one_mirror(cache: MirrorCache, remote: Repo) -> None:
    mirrors = await asyncio.gather(*(cache.ensure(url(remote)) for _ in range(3)))
    other = MirrorCache(cache.runner, cache.data_dir)
    mirrors.append(await other.ensure(url(remote)))

    assert {mirror.path for mirror in mirrors} == {mirrors[0].path}
    assert [path.name for path in cache.data_dir.iterdir()] == [mirrors[0].path.name]


@pytest.mark.parametrize("bad", ["https://bot:tok@gitea.example.com/o/r.git", "https://tok@gitea.example.com/r"])
async def test_credentials_in_the_url_are_refused(cache: MirrorCache, bad: str) -> None:
    with pytest.raises(ValueError, match="credentials"):
        await cache.ensure(bad)


async def test_fetch_updates_branches_and_fetches_pull_refs(cache: MirrorCache, remote: Repo, repo: Repo) -> None:
    mirror = await cache.ensure(url(remote))
    moved = repo.commit("m2", {"c.txt": "c\n"})
    repo.git("push", "--quiet", str(remote.path), "main")

    await mirror.fetch()
    await mirror.fetch("+refs/pull/1/head:refs/pull/1/head")

    assert await mirror.resolve("main") == moved
    assert await mirror.resolve("refs/pull/1/head") == remote.rev("feature")


async def test_candidate_built_in_the_mirror_lands_by_fast_forward(
    cache: MirrorCache, remote: Repo, runner: GitRunner
) -> None:
    mirror = await cache.ensure(url(remote))
    built = await CandidateBuilder(runner, mirror.path).rebase("main", "feature", committer_date=COMMITTER_DATE)
    assert isinstance(built, Built)

    staged = await mirror.push_ref(STAGING, built.sha, None)
    landed = await mirror.push_fast_forward("main", built.sha)
    cleaned = await mirror.delete_ref(STAGING, built.sha)

    assert staged == Pushed(STAGING, built.sha)
    assert landed == Pushed("refs/heads/main", built.sha)
    assert cleaned == Pushed(STAGING, None)
    assert remote.rev("main") == built.sha
    assert remote.git("for-each-ref", "refs/heads/merge-bot") == ""


async def test_push_fast_forward_refuses_to_rewind_the_base(cache: MirrorCache, remote: Repo, repo: Repo) -> None:
    mirror = await cache.ensure(url(remote))
    stale = remote.rev("main")
    repo.commit("m2", {"c.txt": "c\n"})
    repo.git("push", "--quiet", str(remote.path), "main")
    moved = remote.rev("main")

    unknown = await mirror.push_fast_forward("main", stale)
    await mirror.fetch()
    known = await mirror.push_fast_forward("main", stale)

    assert isinstance(unknown, Rejected) and unknown.reason is Rejection.NON_FAST_FORWARD
    assert known == Rejected("refs/heads/main", Rejection.NON_FAST_FORWARD, "rejected (non-fast-forward)")
    assert remote.rev("main") == moved


async def test_push_ref_with_a_stale_lease_leaves_the_ref_alone(cache: MirrorCache, remote: Repo) -> None:
    mirror = await cache.ensure(url(remote))
    main, feature = remote.rev("main"), remote.rev("feature")
    assert await mirror.push_ref(STAGING, main, None) == Pushed(STAGING, main)

    taken = await mirror.push_ref(STAGING, feature, None)
    stale = await mirror.push_ref(STAGING, feature, feature)
    moved = await mirror.push_ref(STAGING, feature, main)
    again = await mirror.push_ref(STAGING, feature, main)

    assert taken == Rejected(STAGING, Rejection.STALE_LEASE, "rejected (stale info)")
    assert stale == Rejected(STAGING, Rejection.STALE_LEASE, "rejected (stale info)")
    assert moved == Pushed(STAGING, feature)
    assert again == Pushed(STAGING, feature, up_to_date=True)


async def test_remote_sha_reads_exactly_the_ref_asked_for(cache: MirrorCache, remote: Repo) -> None:
    mirror = await cache.ensure(url(remote))
    await mirror.push_ref("refs/heads/x/refs/heads/main", remote.rev("feature"), None)

    assert await mirror.remote_sha("refs/heads/main") == remote.rev("main")
    assert await mirror.remote_sha(STAGING) is None


async def test_push_ref_rewrites_a_branch_the_bot_rebased(cache: MirrorCache, remote: Repo, runner: GitRunner) -> None:
    mirror = await cache.ensure(url(remote))
    old_head = remote.rev("feature")
    built = await CandidateBuilder(runner, mirror.path).rebase("main", "feature")
    assert isinstance(built, Built)

    result = await mirror.push_ref("refs/heads/feature", built.sha, old_head)

    assert result == Pushed("refs/heads/feature", built.sha)
    assert remote.rev("feature") == built.sha


async def test_delete_ref_with_a_stale_lease_is_rejected(cache: MirrorCache, remote: Repo) -> None:
    mirror = await cache.ensure(url(remote))
    main = remote.rev("main")
    await mirror.push_ref(STAGING, remote.rev("feature"), None)

    result = await mirror.delete_ref(STAGING, main)

    assert result == Rejected(STAGING, Rejection.STALE_LEASE, "rejected (stale info)")
    assert remote.rev(STAGING) == remote.rev("feature")


async def test_remote_refusal_carries_the_remote_message(cache: MirrorCache, remote: Repo) -> None:
    mirror = await cache.ensure(url(remote))
    hook = remote.path / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch main is protected' >&2\nexit 1\n")
    hook.chmod(0o755)

    result = await mirror.push_ref(STAGING, remote.rev("main"), None)

    assert isinstance(result, Rejected) and result.reason is Rejection.REMOTE_REJECTED
    assert "pre-receive hook declined" in result.detail
    assert "remote: branch main is protected" in result.detail


async def test_push_to_an_unreachable_remote_raises(cache: MirrorCache, remote: Repo, tmp_path: Path) -> None:
    mirror = await cache.ensure(url(remote))
    await mirror.runner.run(mirror.path, "config", "remote.origin.url", str(tmp_path / "gone.git"))

    with pytest.raises(GitError):
        await mirror.push_fast_forward("main", remote.rev("main"))


@pytest.mark.parametrize(
    ("ref", "sha"),
    [("main", "a" * 40), ("refs/heads/x", "HEAD"), ("refs/heads/a..b", "a" * 40), ("refs/heads/x:y", "a" * 40)],
)
async def test_push_arguments_are_checked(cache: MirrorCache, remote: Repo, ref: str, sha: str) -> None:
    mirror = await cache.ensure(url(remote))
    with pytest.raises(ValueError):
        await mirror.push_ref(ref, sha, None)


def test_parse_push_porcelain() -> None:
    out = (
        "To https://gitea.example.com/o/r.git\n"
        "*\t0123:refs/heads/merge-bot/main/1\t[new branch]\n"
        " \tabc:refs/heads/main\t111..222\n"
        "!\t(delete):refs/heads/gone\t[rejected] (stale info)\n"
        "!\tabc:refs/heads/protected\t[remote rejected] (protected branch hook declined)\n"
        "Done\n"
    )
    lines = parse_push_porcelain(out)
    assert set(lines) == {"refs/heads/merge-bot/main/1", "refs/heads/main", "refs/heads/gone", "refs/heads/protected"}
    assert lines["refs/heads/main"].flag == " "
    assert (lines["refs/heads/gone"].status, lines["refs/heads/gone"].reason) == ("rejected", "stale info")
    assert lines["refs/heads/protected"].reason == "protected branch hook declined"
