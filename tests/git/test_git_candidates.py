"""Candidates built with merge-tree/commit-tree: rebase, merge, squash, conflicts, empty PRs."""

from __future__ import annotations

import pytest

from bot.git.candidates import (
    Built,
    CandidateBuilder,
    Conflict,
    NothingToMerge,
    Signature,
    git_date,
    parse_merge_tree,
)
from bot.git.runner import GitError

from .gitrepo import ANN, BOB, BOT, COMMITTER_DATE, Repo


def fork(repo: Repo) -> tuple[str, str]:
    """main: base -> m1 (moved on); feature (from base): f1 -> f2. Returns (main, feature) tips."""
    repo.commit("base", {"a.txt": "a\n", "b.txt": "b\n"})
    repo.checkout("main", new="feature")
    repo.commit("f1: touch b\n\nWith a body.", {"b.txt": "b\nfeature\n"}, author=ANN, tz="-0500")
    feature = repo.commit("f2: add c", {"c.txt": "c\n"}, author=BOB)
    repo.checkout("main")
    main = repo.commit("m1: touch a", {"a.txt": "a\nmain\n"})
    return main, feature


def git_rebase(repo: Repo, base: str, head: str) -> str:
    """What ``git rebase`` makes of ``head`` onto ``base`` with the bot as committer (HEAD id)."""
    repo.checkout(head)
    env = {
        "GIT_COMMITTER_NAME": BOT.name,
        "GIT_COMMITTER_EMAIL": BOT.email,
        "GIT_COMMITTER_DATE": git_date(COMMITTER_DATE),
    }
    repo.git("rebase", "--quiet", base, env=env)
    return repo.rev("HEAD")


async def test_rebase_onto_moved_base_keeps_authors_and_sets_committer(repo: Repo, builder: CandidateBuilder) -> None:
    main, _ = fork(repo)
    f1, f2 = repo.git("rev-list", "--reverse", "main..feature").split()

    result = await builder.rebase("main", "feature", committer_date=COMMITTER_DATE)

    assert isinstance(result, Built)
    assert result.base_sha == main and result.commits == (f1, f2) and result.dropped == ()
    first = repo.parents(result.sha)[0]
    assert repo.parents(first) == [main]
    assert repo.read(result.sha, "a.txt") == "a\nmain"
    assert repo.read(result.sha, "b.txt") == "b\nfeature"
    assert repo.read(result.sha, "c.txt") == "c"
    for new, old in ((first, f1), (result.sha, f2)):
        assert repo.show("%an <%ae> %ad", new) == repo.show("%an <%ae> %ad", old)
        assert repo.show("%B", new) == repo.show("%B", old)
        assert repo.show("%cn <%ce> %ct %cd", new).startswith(f"{BOT.name} <{BOT.email}> 1714564800")
    assert repo.show("%ai", first).endswith("-0500")


async def test_rebase_is_identical_to_git_rebase(repo: Repo, builder: CandidateBuilder) -> None:
    main, feature = fork(repo)

    result = await builder.rebase(main, feature, committer_date=COMMITTER_DATE)

    assert isinstance(result, Built)
    assert result.sha == git_rebase(repo, main, feature)


async def test_same_inputs_give_the_same_candidate(repo: Repo, builder: CandidateBuilder) -> None:
    main, feature = fork(repo)
    first = await builder.rebase(main, feature, committer_date=COMMITTER_DATE)
    again = await builder.rebase(main, feature, committer_date=COMMITTER_DATE)
    assert first == again


async def test_rebase_of_a_pr_already_on_the_tip_keeps_its_commits(repo: Repo, builder: CandidateBuilder) -> None:
    repo.commit("base", {"a.txt": "a\n"})
    repo.checkout("main", new="feature")
    f1 = repo.commit("f1", {"b.txt": "b\n"})
    f2 = repo.commit("f2", {"c.txt": "c\n"})

    result = await builder.rebase("main", "feature", committer_date=COMMITTER_DATE)

    assert result == Built(f2, repo.rev("main"), (f1, f2))


async def test_rebase_skips_merge_commits_and_changes_already_in_base_like_git_rebase(
    repo: Repo, builder: CandidateBuilder
) -> None:
    repo.commit("base", {"a.txt": "a\n"})
    repo.checkout("main", new="side")
    repo.commit("side", {"s.txt": "s\n"})
    repo.checkout("main", new="feature")
    picked = repo.commit("f1: also on main", {"p.txt": "p\n"})
    repo.commit("f2", {"b.txt": "b\n"})
    repo.git("merge", "--quiet", "--no-ff", "-m", "merge side", "side")
    merge_commit = repo.rev("HEAD")
    repo.commit("f3", {"b.txt": "b\nb\n"})
    repo.checkout("main")
    repo.git("cherry-pick", picked)
    main = repo.commit("m1", {"a.txt": "a\nmain\n"})

    result = await builder.rebase(main, "feature", committer_date=COMMITTER_DATE)

    assert isinstance(result, Built)
    assert picked in result.dropped and merge_commit in result.dropped
    assert len(result.commits) == 3  # side, f2, f3
    assert result.sha == git_rebase(repo, main, "feature")


async def test_rebase_drops_commits_that_become_empty_and_keeps_empty_ones(
    repo: Repo, builder: CandidateBuilder
) -> None:
    repo.commit("base", {"a.txt": "a\n"})
    repo.checkout("main", new="feature")
    becomes_empty = repo.commit("f1: same change as main, other history", {"a.txt": "A\n", "x.txt": "x\n"})
    empty = repo.commit("f2: empty on purpose")
    repo.commit("f3: real", {"b.txt": "b\n"})
    repo.checkout("main")
    repo.commit("m1", {"x.txt": "x\n"})
    main = repo.commit("m2", {"a.txt": "A\n"})

    result = await builder.rebase(main, "feature", committer_date=COMMITTER_DATE)

    assert isinstance(result, Built)
    assert result.dropped == (becomes_empty,)
    assert empty in result.commits
    assert result.sha == git_rebase(repo, main, "feature")


async def test_rebase_conflict_names_the_commit_and_paths(repo: Repo, builder: CandidateBuilder) -> None:
    repo.commit("base", {"a.txt": "a\n", "d/b.txt": "b\n"})
    repo.checkout("main", new="feature")
    repo.commit("f1: fine", {"c.txt": "c\n"})
    bad = repo.commit("f2: clashes", {"a.txt": "feature\n", "d/b.txt": "feature\n"})
    repo.checkout("main")
    repo.commit("m1", {"a.txt": "main\n", "d/b.txt": "main\n"})

    result = await builder.rebase("main", "feature")

    assert isinstance(result, Conflict)
    assert result.at_commit == bad
    assert result.paths == ("a.txt", "d/b.txt")
    assert "CONFLICT (content): Merge conflict in a.txt" in result.messages


async def test_rebase_conflict_on_modify_delete(repo: Repo, builder: CandidateBuilder) -> None:
    repo.commit("base", {"a.txt": "a\n"})
    repo.checkout("main", new="feature")
    head = repo.commit("f1", {"a.txt": "changed\n"})
    repo.checkout("main")
    repo.commit("m1: delete", {"a.txt": None})

    result = await builder.rebase("main", "feature")

    assert isinstance(result, Conflict) and result.paths == ("a.txt",) and result.at_commit == head


async def test_rebase_applies_a_root_commit_like_a_cherry_pick(repo: Repo, builder: CandidateBuilder) -> None:
    main = repo.commit("base", {"a.txt": "a\n"})
    repo.git("checkout", "--quiet", "--orphan", "other")
    repo.git("rm", "--quiet", "-r", "--cached", ".")
    (repo.path / "a.txt").unlink()
    root = repo.commit("unrelated root", {"z.txt": "z\n"})

    result = await builder.rebase(main, "other", committer_date=COMMITTER_DATE)

    assert isinstance(result, Built) and result.commits == (root,)
    assert sorted(repo.files(result.sha)) == ["a.txt", "z.txt"]
    assert repo.parents(result.sha) == [main]


async def test_merge_commit_has_base_and_head_as_parents(repo: Repo, builder: CandidateBuilder) -> None:
    main, feature = fork(repo)

    result = await builder.merge(
        "main",
        "feature",
        message="Merge pull request #7 from ann/feature\n\nfeature",
        committer_date=COMMITTER_DATE,
    )

    assert isinstance(result, Built)
    assert result.commits == tuple(repo.git("rev-list", "--reverse", "main..feature").split())
    assert repo.parents(result.sha) == [main, feature]
    assert repo.show("%B", result.sha) == "Merge pull request #7 from ann/feature\n\nfeature"
    assert repo.git("cat-file", "-p", f"{result.sha}^{{tree}}") == repo.git(
        "cat-file", "-p", repo.git("merge-tree", "--write-tree", main, feature)
    )
    bot = f"{BOT.name} <{BOT.email}>"
    assert repo.show("%an <%ae>|%cn <%ce>", result.sha) == f"{bot}|{bot}"
    assert repo.show("%at %ct", result.sha) == "1714564800 1714564800"


async def test_squash_is_one_commit_by_the_first_author(repo: Repo, builder: CandidateBuilder) -> None:
    main, _ = fork(repo)

    result = await builder.squash("main", "feature", message="Add c (#7)", committer_date=COMMITTER_DATE)

    assert isinstance(result, Built) and len(result.commits) == 2
    assert repo.parents(result.sha) == [main]
    assert repo.show("%B", result.sha) == "Add c (#7)"
    assert sorted(repo.files(result.sha)) == ["a.txt", "b.txt", "c.txt"]
    assert repo.read(result.sha, "b.txt") == "b\nfeature"
    first = result.commits[0]
    assert repo.show("%an <%ae> %ad", result.sha) == repo.show("%an <%ae> %ad", first)
    assert repo.show("%cn", result.sha) == BOT.name


async def test_squash_with_a_given_author(repo: Repo, builder: CandidateBuilder) -> None:
    fork(repo)
    poster = Signature("Pat Poster", "pat@example.com")

    result = await builder.squash("main", "feature", message="x", author=poster, committer_date=COMMITTER_DATE)

    assert isinstance(result, Built)
    assert repo.show("%an <%ae> %at", result.sha) == "Pat Poster <pat@example.com> 1714564800"


@pytest.mark.parametrize("method", ["merge", "squash"])
async def test_merge_and_squash_conflicts_name_the_paths(repo: Repo, builder: CandidateBuilder, method: str) -> None:
    repo.commit("base", {"a.txt": "a\n", "b.txt": "b\n"})
    repo.checkout("main", new="feature")
    head = repo.commit("f1", {"a.txt": "feature\n"})
    repo.checkout("main")
    repo.commit("m1", {"a.txt": "main\n"})

    result = await getattr(builder, method)("main", "feature", message="m")

    assert result == Conflict(("a.txt",), head, ("CONFLICT (content): Merge conflict in a.txt",))


async def test_pr_contained_in_base_is_nothing_to_merge(repo: Repo, builder: CandidateBuilder) -> None:
    repo.commit("base", {"a.txt": "a\n"})
    repo.checkout("main", new="feature")
    head = repo.commit("f1", {"b.txt": "b\n"})
    repo.checkout("main")
    repo.git("merge", "--quiet", "--ff-only", "feature")
    main = repo.commit("m1", {"a.txt": "main\n"})

    expected = NothingToMerge(main, head)
    assert await builder.rebase("main", "feature") == expected
    assert await builder.merge("main", "feature", message="m") == expected
    assert await builder.squash("main", "feature", message="m") == expected
    assert await builder.rebase("main", "main") == NothingToMerge(main, main)


async def test_pr_whose_change_was_applied_separately_is_nothing_to_merge(
    repo: Repo, builder: CandidateBuilder
) -> None:
    repo.commit("base", {"a.txt": "a\n"})
    repo.checkout("main", new="feature")
    head = repo.commit("f1", {"b.txt": "b\n"})
    repo.checkout("main")
    repo.git("cherry-pick", head)
    main = repo.rev("HEAD")

    assert await builder.rebase("main", "feature") == NothingToMerge(main, head)
    assert await builder.squash("main", "feature", message="m") == NothingToMerge(main, head)


async def test_unrelated_histories_do_not_merge(repo: Repo, builder: CandidateBuilder) -> None:
    repo.commit("base", {"a.txt": "a\n"})
    repo.git("checkout", "--quiet", "--orphan", "other")
    head = repo.commit("unrelated root", {"z.txt": "z\n"})

    result = await builder.merge("main", "other", message="m")

    assert result == Conflict((), head, ("refusing to merge unrelated histories",))


async def test_unknown_revision_is_a_git_error(repo: Repo, builder: CandidateBuilder) -> None:
    repo.commit("base", {"a.txt": "a\n"})
    with pytest.raises(GitError) as caught:
        await builder.rebase("main", "no-such-branch")
    assert caught.value.returncode == 128


@pytest.mark.parametrize("rev", ["--output=/tmp/x", "", "-p"])
async def test_option_like_revisions_are_refused(builder: CandidateBuilder, rev: str) -> None:
    with pytest.raises(ValueError):
        await builder.rebase("main", rev)


def test_parse_merge_tree_reads_paths_and_messages() -> None:
    out = (
        b"1fc045e328f34377a65c62a40cb13f9edc9cfa99\0f\0dir/g h\0\0"
        b"1\0f\0Auto-merging\0Auto-merging f\n\0"
        b"2\0f\0x\0CONFLICT (rename/delete)\0CONFLICT (rename/delete): f renamed to x\n\0"
    )
    parsed = parse_merge_tree(out, clean=False)
    assert parsed.tree == "1fc045e328f34377a65c62a40cb13f9edc9cfa99"
    assert parsed.paths == ("f", "dir/g h")
    assert parsed.messages == ("Auto-merging f", "CONFLICT (rename/delete): f renamed to x")
    assert parse_merge_tree(b"1fc045e328f34377a65c62a40cb13f9edc9cfa99\0", clean=True).paths == ()


async def test_rebase_reencodes_a_latin1_message_to_utf8_like_git_rebase(repo: Repo, builder: CandidateBuilder) -> None:
    repo.commit("base", {"a.txt": "a\n"})
    repo.checkout("main", new="feature")
    (repo.path / "b.txt").write_text("b\n")
    repo.git("add", "b.txt")
    latin = "Caf\xe9 na\xefve\n".encode("latin-1")
    repo.git("-c", "i18n.commitEncoding=ISO-8859-1", "commit", "--quiet", "-F", "-", stdin=latin)
    repo.checkout("main")
    main = repo.commit("m1", {"a.txt": "main\n"})

    result = await builder.rebase(main, "feature", committer_date=COMMITTER_DATE)

    assert isinstance(result, Built)
    assert result.sha == git_rebase(repo, main, "feature")
    assert repo.show("%B", result.sha) == "Café naïve"
