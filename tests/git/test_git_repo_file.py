"""The repository's merge-bot file on the mirror: read at a commit (first path found wins), its history, and
a chain whose PR brings a bad file (bot.gate.build.check_files), on real repositories."""

from __future__ import annotations

from bot.config import RepoSettings
from bot.gate.build import check_files, co_authors
from bot.git.candidates import BadConfig, Broken, CandidateBuilder, Chain, Piece
from bot.git.mirror import Mirror
from bot.git.runner import GitRunner
from bot.queue.model import MergeMethod
from bot.repoconfig.file import PATHS

from .gitrepo import BOB, Repo

GOOD = 'merge_method = "squash"\n'
BAD = 'merge_method = "squash"\nbatch_max = "many"\n'


def mirror_of(runner: GitRunner, repo: Repo) -> Mirror:
    return Mirror(runner, repo.path, "https://forge.invalid/acme/app.git")


async def test_the_first_path_found_wins_and_a_directory_is_no_file(repo: Repo, runner: GitRunner) -> None:
    mirror = mirror_of(runner, repo)
    none = repo.commit("no file", {"app.txt": "app\n"})
    assert await mirror.show(none, PATHS) is None
    lower = repo.commit("dot file", {".merge-bot.toml": "batch_max = 1\n"})
    assert await mirror.show(lower, PATHS) == (".merge-bot.toml", b"batch_max = 1\n")
    forgejo = repo.commit("forgejo", {".forgejo/merge-bot.toml": "batch_max = 2\n"})
    assert await mirror.show(forgejo, PATHS) == (".forgejo/merge-bot.toml", b"batch_max = 2\n")
    gitea = repo.commit("gitea", {".gitea/merge-bot.toml": "batch_max = 3\n"})
    assert await mirror.show(gitea, PATHS) == (".gitea/merge-bot.toml", b"batch_max = 3\n")
    odd = repo.commit(
        "a directory where a file is looked for", {".gitea/merge-bot.toml": None, ".gitea/merge-bot.toml/x": ""}
    )
    assert await mirror.show(odd, PATHS) == (".forgejo/merge-bot.toml", b"batch_max = 2\n")
    assert await mirror.history(odd, PATHS, 10) == [odd, gitea, forgejo, lower]
    assert await mirror.history(odd, PATHS, 2) == [odd, gitea]


def _prs(repo: Repo, second: dict[str, str | None]) -> tuple[str, str, str]:
    main = repo.commit("base", {"app.txt": "app\n", ".gitea/merge-bot.toml": GOOD})
    repo.checkout(main, new="pr1")
    pr1 = repo.commit("pr1: code only", {"one.txt": "1\n"})
    repo.checkout(main, new="pr2")
    pr2 = repo.commit("pr2", second, author=BOB)
    repo.checkout("main")
    return main, pr1, pr2


async def _chain(runner: GitRunner, repo: Repo, main: str, pr1: str, pr2: str) -> Chain:
    pieces = [Piece(1, pr1, MergeMethod.REBASE), Piece(2, pr2, MergeMethod.SQUASH, "PR two (#2)")]
    chain = await CandidateBuilder(runner, repo.path).chain(main, pieces)
    assert isinstance(chain, Chain)
    return chain


async def test_a_pr_bringing_a_bad_file_breaks_the_chain_there(repo: Repo, runner: GitRunner) -> None:
    main, pr1, pr2 = _prs(repo, {".gitea/merge-bot.toml": BAD})
    chain = await _chain(runner, repo, main, pr1, pr2)

    checked = await check_files(mirror_of(runner, repo), main, chain, RepoSettings())

    assert isinstance(checked, Broken)
    assert checked.key == 2
    assert checked.result == BadConfig(
        ".gitea/merge-bot.toml",
        ".gitea/merge-bot.toml:2: batch_max: Input should be a valid integer, unable to parse string as an integer",
    )
    assert checked.links == chain.links[:1]  # the PR before it applies and goes back to the queue


async def test_a_pr_bringing_a_good_file_or_another_path_passes(repo: Repo, runner: GitRunner) -> None:
    main, pr1, pr2 = _prs(repo, {".gitea/merge-bot.toml": 'merge_method = "merge"\nallowed_methods = ["merge"]\n'})
    chain = await _chain(runner, repo, main, pr1, pr2)
    assert await check_files(mirror_of(runner, repo), main, chain, RepoSettings()) == chain


async def test_a_bad_file_already_on_the_base_is_not_the_prs_fault(repo: Repo, runner: GitRunner) -> None:
    main = repo.commit("base", {"app.txt": "app\n", ".gitea/merge-bot.toml": BAD})
    repo.checkout(main, new="pr")
    pr = repo.commit("pr: code", {"two.txt": "2\n"})
    repo.checkout("main")
    chain = await CandidateBuilder(runner, repo.path).chain(main, [Piece(1, pr)])
    assert isinstance(chain, Chain)
    assert await check_files(mirror_of(runner, repo), main, chain, RepoSettings()) == chain


async def test_a_pr_deleting_the_file_passes(repo: Repo, runner: GitRunner) -> None:
    main, pr1, pr2 = _prs(repo, {".gitea/merge-bot.toml": None, "x.txt": "x\n"})
    chain = await _chain(runner, repo, main, pr1, pr2)
    assert await check_files(mirror_of(runner, repo), main, chain, RepoSettings()) == chain


async def test_co_authors_are_the_other_authors_of_the_prs_commits(repo: Repo, runner: GitRunner) -> None:
    from bot.db.models import Entry

    main = repo.commit("base", {"app.txt": "app\n"})
    repo.checkout(main, new="pr")
    repo.commit("ann's first", {"a.txt": "a\n"})
    repo.commit("bob's", {"b.txt": "b\n"}, author=BOB)
    head = repo.commit("ann's second", {"c.txt": "c\n"})
    repo.checkout("main")
    mirror = mirror_of(runner, repo)
    squash = Entry(approved_sha=head, merge_method="squash")
    merge = Entry(approved_sha=head, merge_method="merge")
    assert await co_authors(runner, mirror, main, squash) == ("Bob Builder <bob@example.com>",)
    assert await co_authors(runner, mirror, main, merge) == (
        "Ann Author <ann@example.com>",
        "Bob Builder <bob@example.com>",
    )
