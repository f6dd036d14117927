"""Candidates of several PRs (an attempt's entries): each PR built onto the ones before it, by its method."""

from __future__ import annotations

import pytest

from bot.git.candidates import Broken, CandidateBuilder, Chain, Conflict, Piece
from bot.queue.model import MergeMethod

from .gitrepo import ANN, BOB, COMMITTER_DATE, Repo


def two_prs(repo: Repo) -> tuple[str, str, str]:
    """main: base -> m1; pr1 (from base): p1a -> p1b; pr2 (from base): p2a. Returns (main, pr1, pr2) tips."""
    repo.commit("base", {"a.txt": "a\n", "b.txt": "b\n"})
    repo.checkout("main", new="pr1")
    repo.commit("p1a: add x", {"x.txt": "x\n"}, author=ANN)
    pr1 = repo.commit("p1b: touch b", {"b.txt": "b\npr1\n"}, author=ANN)
    repo.checkout("main")
    repo.checkout("main", new="pr2")
    pr2 = repo.commit("p2a: add y", {"y.txt": "y\n"}, author=BOB)
    repo.checkout("main")
    main = repo.commit("m1: touch a", {"a.txt": "a\nmain\n"})
    return main, pr1, pr2


def pieces(method: MergeMethod, pr1: str, pr2: str) -> list[Piece]:
    return [Piece(1, pr1, method, "PR one (#1)"), Piece(2, pr2, method, "PR two (#2)")]


@pytest.mark.parametrize("method", list(MergeMethod))
async def test_two_prs_are_stacked_in_order_and_each_end_is_named(
    repo: Repo, builder: CandidateBuilder, method: MergeMethod
) -> None:
    main, pr1, pr2 = two_prs(repo)

    chain = await builder.chain(main, pieces(method, pr1, pr2), committer_date=COMMITTER_DATE)

    assert isinstance(chain, Chain)
    first, second = chain.links
    assert (first.key, second.key) == (1, 2)
    assert chain.base_sha == main and second.end_sha == chain.sha
    assert first.built.base_sha == main and second.built.base_sha == first.end_sha
    # What will land, oldest first: the commits between the base and each end, in order.
    own = repo.git("rev-list", "--reverse", "--first-parent", f"{main}..{first.end_sha}").split()
    theirs = repo.git("rev-list", "--reverse", "--first-parent", f"{first.end_sha}..{chain.sha}").split()
    subjects = [repo.show("%s", sha) for sha in own + theirs]
    if method is MergeMethod.REBASE:
        assert subjects == ["p1a: add x", "p1b: touch b", "p2a: add y"]
        assert repo.parents(own[0]) == [main]
    elif method is MergeMethod.MERGE:
        assert subjects == ["PR one (#1)", "PR two (#2)"]
        assert repo.parents(first.end_sha) == [main, pr1]
        assert repo.parents(chain.sha) == [first.end_sha, pr2]
    else:
        assert subjects == ["PR one (#1)", "PR two (#2)"]
        assert repo.parents(first.end_sha) == [main] and repo.parents(chain.sha) == [first.end_sha]
        assert repo.show("%an", chain.sha) == BOB[0]
    assert repo.files(first.end_sha) == ["a.txt", "b.txt", "x.txt"]
    assert repo.files(chain.sha) == ["a.txt", "b.txt", "x.txt", "y.txt"]
    assert repo.read(chain.sha, "a.txt") == "a\nmain" and repo.read(chain.sha, "b.txt") == "b\npr1"


@pytest.mark.parametrize("method", list(MergeMethod))
async def test_a_pr_conflicting_with_the_one_before_it_breaks_the_chain_at_itself(
    repo: Repo, builder: CandidateBuilder, method: MergeMethod
) -> None:
    main, pr1, _ = two_prs(repo)
    repo.checkout(main)
    repo.checkout(main, new="pr3")
    pr3 = repo.commit("p3: touch b too", {"b.txt": "b\npr3\n"}, author=BOB)

    broken = await builder.chain(main, pieces(method, pr1, pr3), committer_date=COMMITTER_DATE)

    assert isinstance(broken, Broken) and broken.key == 2
    assert isinstance(broken.result, Conflict) and broken.result.paths == ("b.txt",)
    assert [link.key for link in broken.links] == [1]


async def test_a_chain_of_one_is_the_single_build(repo: Repo, builder: CandidateBuilder) -> None:
    main, pr1, _ = two_prs(repo)
    alone = await builder.rebase(main, pr1, committer_date=COMMITTER_DATE)
    chain = await builder.chain(main, [Piece(7, pr1)], committer_date=COMMITTER_DATE)
    assert isinstance(chain, Chain) and chain.sha == getattr(alone, "sha", None) and chain.links[0].built == alone
