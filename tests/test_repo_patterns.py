"""MERGE_BOT_REPOS patterns (bot.repos.patterns), what discovery makes of a listing (bot.repos.discovery.changes)
and which feed items a pass reads (bot.scheduler.feed.changed): pure functions, no forge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config import ConfigError, load_settings
from bot.forge.client import ChangedPull, RepoSummary
from bot.repos.discovery import Found, Why, changes
from bot.repos.patterns import Exact, Owner, PatternError, Topic, matches, parse, parse_all
from bot.scheduler.feed import changed

NAMES = st.text(alphabet="abcXYZ019_.-", min_size=1, max_size=12)
T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("acme/app", Exact("acme", "app")),
        (" acme/app ", Exact("acme", "app")),
        ("acme/*", Owner("acme")),
        ("topic:merge-queue", Topic("merge-queue")),
        ("topic:v1.2", Topic("v1.2")),
    ],
)
def test_each_form_parses(text: str, pattern: object) -> None:
    assert parse(text) == pattern
    assert str(parse(text)) == text.strip()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("justaname", "expected owner/name, owner/* or topic:NAME"),
        ("*/*", "a wildcard stands only for a whole repository name"),
        ("acme/app*", "a wildcard stands only for a whole repository name"),
        ("topic:", "names no topic"),
        ("topic:Merge", "Gitea's topics are lower case, write topic:merge"),
        ("topic:-x", "is not a Gitea topic"),
        ("topic:" + "a" * 36, "at most 35 characters"),
        ("a/b/c", "expected owner/name"),
    ],
)
def test_a_bad_pattern_says_what_would_do(text: str, says: str) -> None:
    with pytest.raises(PatternError) as info:
        parse(text)
    assert says in str(info.value)


def test_check_config_shows_the_bad_pattern_on_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"MERGE_BOT_WEBHOOK_SECRET": "s", "MERGE_BOT_REPOS": "acme/app, topic:Foo"})
    message = str(info.value)
    assert "repos (MERGE_BOT_REPOS)" in message and "topic:foo" in message and "\n" not in message


def test_settings_keep_each_pattern_once_and_name_the_explicit_ones() -> None:
    settings = load_settings(
        {"MERGE_BOT_WEBHOOK_SECRET": "s", "MERGE_BOT_REPOS": "acme/app, acme/*, ACME/app, topic:q, acme/*"}
    )
    assert settings.repos == ("acme/app", "acme/*", "topic:q")
    assert settings.explicit_repos == ("acme/app",)
    assert settings.discovery_seconds == 300


@given(st.text(max_size=40))
def test_any_text_parses_or_says_why(text: str) -> None:
    try:
        pattern = parse(text)
    except PatternError as exc:
        assert str(exc)
    else:
        assert parse(str(pattern)) == pattern


@given(NAMES, NAMES)
def test_a_repository_name_round_trips_and_matches_itself_only(owner: str, name: str) -> None:
    pattern = parse(f"{owner}/{name}")
    assert pattern == Exact(owner, name)
    assert matches(pattern, f"{owner.upper()}/{name.upper()}")
    assert not matches(pattern, f"{owner}/{name}x")
    assert matches(parse(f"{owner}/*"), f"{owner}/{name}x")


def test_parse_all_drops_repeats_case_insensitively() -> None:
    assert parse_all(["a/b", "A/B", "topic:x", "topic:x"]) == (Exact("a", "b"), Topic("x"))


def summary(name: str, *, admin: bool = True, archived: bool = False) -> RepoSummary:
    return RepoSummary(name, 1, admin, archived, T0, ())


def found(*summaries: RepoSummary, complete: bool = True, pattern: str = "acme/*") -> Found:
    result = Found(complete=complete)
    for item in summaries:
        result.add(parse(pattern), item)
    return result


def test_discovery_adds_what_the_bot_administers_and_leaves_out_the_rest() -> None:
    listing = found(summary("acme/a"), summary("acme/b", admin=False), summary("acme/c", archived=True))
    result = changes({}, listing)
    assert result.added == (("acme/a", "acme/*"),)
    assert result.dropped == ()


def test_discovery_drops_what_left_with_its_reason_and_keeps_what_is_named() -> None:
    managed = {"acme/a": "acme/a", "acme/b": "acme/b", "acme/gone": "acme/gone", "acme/named": "acme/named"}
    listing = found(summary("acme/a"), summary("acme/b", archived=True))
    result = changes(managed, listing, explicit=["acme/named"])
    assert result.added == ()
    assert result.dropped == (("acme/b", Why.ARCHIVED), ("acme/gone", None))  # None: the forge is asked why


def test_a_failed_listing_never_shrinks_the_managed_set() -> None:
    managed = {"acme/a": "acme/a", "acme/b": "acme/b"}
    listing = found(summary("acme/c"), complete=False)
    result = changes(managed, listing)
    assert result.added == (("acme/c", "acme/*"),)
    assert result.dropped == ()


def test_an_incomplete_listing_still_drops_what_it_saw_without_admin() -> None:
    listing = found(summary("acme/a", admin=False), complete=False)
    assert changes({"acme/a": "acme/a"}, listing).dropped == (("acme/a", Why.ADMIN_LOST),)


def item(number: int, at: datetime, repo: str = "acme/a") -> ChangedPull:
    return ChangedPull(repo, number, at, "open")


def test_the_feed_reads_only_what_is_newer_than_stored() -> None:
    previous = T0 + timedelta(minutes=5)
    stored = {
        ("acme/a", 1): T0,  # older than the item: changed
        ("acme/a", 2): T0 + timedelta(minutes=1),  # as the item, long before the previous read: unchanged
        ("acme/a", 3): None,  # never stored: changed
        ("acme/a", 4): previous,  # as the item, in the second of the previous read: read again
        ("acme/a", 5): T0 + timedelta(minutes=9),  # a webhook newer than the feed's item: unchanged
    }
    items = [
        item(1, T0 + timedelta(minutes=1)),
        item(2, T0 + timedelta(minutes=1)),
        item(3, T0),
        item(4, previous),
        item(5, T0 + timedelta(minutes=2)),
        item(6, T0, repo="other/x"),  # not managed
    ]
    assert dict(changed(items, stored, previous)) == {"acme/a": {1, 3, 4}}
