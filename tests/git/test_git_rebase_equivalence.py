"""Property: the worktree-free rebase gives exactly what ``git rebase`` gives, conflicts included."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.git.candidates import Built, CandidateBuilder, Conflict, NothingToMerge, git_date
from bot.git.runner import GitRunner

from .gitrepo import BOT, COMMITTER_DATE, Repo

FILES = ("a.txt", "b.txt")
LINES = 4
Edit = tuple[str, int, str]

edits = st.lists(st.tuples(st.sampled_from(FILES), st.integers(0, LINES - 1), st.sampled_from("xyz")), max_size=3)


def apply(repo: Repo, content: dict[str, list[str]], message: str, commit_edits: list[Edit]) -> None:
    for name, line, value in commit_edits:
        content[name][line] = value
    repo.commit(message, {name: "\n".join(lines) + "\n" for name, lines in content.items()})


def git_rebase(repo: Repo, base: str, head: str) -> Built | Conflict | NothingToMerge:
    """Run ``git rebase`` and describe its outcome in the builder's terms."""
    repo.checkout(head)
    env = {
        **repo.env,
        "GIT_COMMITTER_NAME": BOT.name,
        "GIT_COMMITTER_EMAIL": BOT.email,
        "GIT_COMMITTER_DATE": git_date(COMMITTER_DATE),
    }
    done = subprocess.run(["git", "-C", str(repo.path), "rebase", "--quiet", base], env=env, capture_output=True)
    if done.returncode != 0:
        stopped = repo.rev("REBASE_HEAD")
        paths = tuple(repo.git("diff", "--name-only", "--diff-filter=U").split())
        repo.git("rebase", "--abort")
        return Conflict(paths, stopped)
    tip = repo.rev("HEAD")
    return NothingToMerge(base, repo.rev(head)) if tip == base else Built(tip, base, ())


@settings(max_examples=30, deadline=None)
@given(main=st.lists(edits, max_size=3), pr=st.lists(edits, min_size=1, max_size=3))
def test_rebase_matches_git_rebase(main: list[list[Edit]], pr: list[list[Edit]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Repo(Path(tmp) / "work")
        start = {name: [str(i) for i in range(LINES)] for name in FILES}
        apply(repo, start, "base", [])
        repo.checkout("main", new="feature")
        feature = {name: list(lines) for name, lines in start.items()}
        for index, commit_edits in enumerate(pr):
            apply(repo, feature, f"pr {index}", commit_edits)
        repo.checkout("main")
        for index, commit_edits in enumerate(main):
            apply(repo, start, f"main {index}", commit_edits)
        base, head = repo.rev("main"), repo.rev("feature")

        builder = CandidateBuilder(GitRunner(committer=BOT), repo.path)
        ours = asyncio.run(builder.rebase(base, head, committer_date=COMMITTER_DATE))
        theirs = git_rebase(repo, base, head)

    if isinstance(ours, Built):
        assert isinstance(theirs, Built) and ours.sha == theirs.sha
    elif isinstance(ours, Conflict):
        assert theirs == Conflict(tuple(sorted(ours.paths)), ours.at_commit)
    else:
        assert ours == theirs
