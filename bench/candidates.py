"""Candidate build time: merge-tree/commit-tree on a cached mirror versus a fresh clone + ``git rebase``.

Run from the repository root (with the venv active)::

    python bench/candidates.py [--commits 10000] [--behind 1000] [--runs 5]

It generates a throwaway 'forge' repository with ``git fast-import``: ``--commits`` commits on main and a PR
of 3 commits branched ``--behind`` commits before the tip. Then, in the same run, it times building the
rebased candidate of that PR

- on the bot's cached bare mirror (created once, outside the timing) with :class:`CandidateBuilder`,
  with and without the incremental ``git fetch`` the bot does before a build, and
- the way a worktree-based bot would: ``git clone`` of the remote, checkout of the PR, ``git rebase main``,

and prints the median (and min/max) of ``--runs`` repetitions of each and their ratio. Both paths must
produce the same tree. It cleans up after itself and takes well under a minute.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/candidates.py` puts bench/ first on sys.path, where bench/queue.py would shadow the standard
# library's queue module (asyncio and APScheduler import it): take this directory off the path first.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable

import structlog

from bot.git.candidates import Built, CandidateBuilder
from bot.git.mirror import Mirror, MirrorCache
from bot.git.runner import GitRunner, Identity

BOT = Identity("merge-bot", "merge-bot@example.invalid")
PR_COMMITS = 3


def clean_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_COMMITTER_NAME": BOT.name,
        "GIT_COMMITTER_EMAIL": BOT.email,
    }


def git(env: dict[str, str], *args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(["git", *args], input=stdin, env=env, capture_output=True, check=False, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:3])}: {done.stderr.decode()}")
    return done.stdout.decode().strip()


def fast_import_stream(commits: int, behind: int) -> bytes:
    """main: ``commits`` commits touching 50 files in turn; feature: 3 commits off ``main~behind``."""
    out: list[str] = []

    def commit(ref: str, mark: int, parent: int | None, path: str, content: str, message: str) -> None:
        blob = content.encode()
        msg = message.encode()
        when = 1_600_000_000 + mark * 60
        out.append(f"commit {ref}\nmark :{mark}\n")
        out.append(f"author Ann Author <ann@example.com> {when} +0000\n")
        out.append(f"committer Ann Author <ann@example.com> {when} +0000\n")
        out.append(f"data {len(msg)}\n{message}\n")
        if parent is not None:
            out.append(f"from :{parent}\n")
        out.append(f"M 100644 inline {path}\ndata {len(blob)}\n{content}\n\n")

    for number in range(1, commits + 1):
        parent = number - 1 if number > 1 else None
        commit("refs/heads/main", number, parent, f"src/f{number % 50}.txt", f"line {number}\n", f"main {number}")
    fork = commits - behind
    for index in range(PR_COMMITS):
        mark = commits + 1 + index
        parent = fork if index == 0 else mark - 1
        commit("refs/heads/feature", mark, parent, f"pr/p{index}.txt", f"pr {index}\n", f"pr commit {index}")
    return "".join(out).encode()


def make_remote(root: Path, env: dict[str, str], commits: int, behind: int) -> Path:
    remote = root / "remote" / "owner" / "repo.git"
    git(env, "init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    git(env, "-C", str(remote), "fast-import", "--quiet", stdin=fast_import_stream(commits, behind))
    return remote


def clone_and_rebase(root: Path, env: dict[str, str], url: str, run: int) -> str:
    """The worktree way: clone, check the PR out, rebase it onto main; returns the result's tree."""
    work = root / f"clone-{run}"
    git(env, "clone", "--quiet", "--no-checkout", url, str(work))
    git(env, "-C", str(work), "checkout", "--quiet", "-b", "pr", "origin/feature")
    git(env, "-C", str(work), "rebase", "--quiet", "origin/main")
    return git(env, "-C", str(work), "rev-parse", "HEAD^{tree}")


async def mirror_build(mirror: Mirror, builder: CandidateBuilder, fetch: bool) -> str:
    """The bot's way: (incremental fetch, then) merge-tree/commit-tree; returns the candidate's tree."""
    if fetch:
        await mirror.fetch()
    result = await builder.rebase("refs/heads/main", "refs/heads/feature")
    if not isinstance(result, Built) or len(result.commits) != PR_COMMITS:
        raise RuntimeError(f"unexpected build result {result}")
    tree = await mirror.runner.run(mirror.path, "rev-parse", f"{result.sha}^{{tree}}")
    return tree.text.strip()


async def timed(runs: int, action: Callable[[int], Awaitable[str]]) -> tuple[list[float], set[str]]:
    seconds: list[float] = []
    trees: set[str] = set()
    for run in range(runs):
        started = time.perf_counter()
        trees.add(await action(run))
        seconds.append(time.perf_counter() - started)
    return seconds, trees


def row(label: str, seconds: list[float]) -> str:
    median = statistics.median(seconds)
    return f"{label:<44}{median:>9.3f} s{min(seconds):>9.3f} s{max(seconds):>9.3f} s"


async def main(commits: int, behind: int, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-candidates-") as tmp:
        root = Path(tmp)
        env = clean_env(root)
        started = time.perf_counter()
        url = f"file://{make_remote(root, env, commits, behind)}"
        generated = time.perf_counter() - started
        runner = GitRunner(committer=BOT, timeout=60)
        started = time.perf_counter()
        mirror = await MirrorCache(runner, root / "mirrors").ensure(url)
        cached = time.perf_counter() - started
        builder = CandidateBuilder(runner, mirror.path)

        build, build_trees = await timed(runs, lambda _: mirror_build(mirror, builder, fetch=False))
        fetch_build, fetch_trees = await timed(runs, lambda _: mirror_build(mirror, builder, fetch=True))
        clone, clone_trees = await timed(runs, lambda run: asyncio.to_thread(clone_and_rebase, root, env, url, run))

    if len(build_trees | fetch_trees | clone_trees) != 1:
        raise SystemExit("the mirror build and git rebase disagree on the candidate's tree")
    print(f"PR of {PR_COMMITS} commits branched {behind} commits behind a {commits}-commit main; {runs} runs each")
    print(f"(repository generated with fast-import in {generated:.2f} s; mirror created once in {cached:.2f} s)")
    print(f"{'candidate build':<44}{'median':>11}{'min':>11}{'max':>11}")
    print(row("mirror: merge-tree + commit-tree", build))
    print(row("mirror: fetch, then merge-tree + commit-tree", fetch_build))
    print(row("fresh clone + checkout + git rebase", clone))
    ratio = statistics.median(clone) / statistics.median(build)
    ratio_fetch = statistics.median(clone) / statistics.median(fetch_build)
    print(f"clone + rebase is {ratio:.1f}x slower than the mirror build ({ratio_fetch:.1f}x with the fetch)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=10_000, help="commits on main")
    parser.add_argument("--behind", type=int, default=1_000, help="how far behind main's tip the PR forks")
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each measurement")
    args = parser.parse_args(argv)
    if not 0 < args.behind < args.commits or args.runs < 1:
        parser.error("need 0 < --behind < --commits and --runs >= 1")
    return args


if __name__ == "__main__":
    options = parse_args(sys.argv[1:])
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(main(options.commits, options.behind, options.runs))
