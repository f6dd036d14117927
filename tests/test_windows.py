"""The merge window grammar (bot.queue.windows): every rule of its docstring is a case here."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.queue.windows import DAYS, Window, WindowError, parse_days, parse_window


@pytest.mark.parametrize(
    ("text", "days", "start", "end", "zone"),
    [
        ("Mon-Fri 09:00-17:00 Europe/Berlin", {0, 1, 2, 3, 4}, time(9), time(17), "Europe/Berlin"),
        ("Sat,Sun 10:00-12:30 UTC", {5, 6}, time(10), time(12, 30), "UTC"),
        ("Mon-Wed,Fri 08:00-09:00 UTC", {0, 1, 2, 4}, time(8), time(9), "UTC"),
        ("Fri-Mon 00:00-24:00 America/New_York", {4, 5, 6, 0}, time(0), time(0), "America/New_York"),
        ("Tue 22:00-06:00 Asia/Tokyo", {1}, time(22), time(6), "Asia/Tokyo"),
        ("  Mon   09:00-17:00   UTC ", {0}, time(9), time(17), "UTC"),
    ],
)
def test_windows_that_parse(text: str, days: set[int], start: time, end: time, zone: str) -> None:
    window = parse_window(text)
    assert (window.days, window.start, window.end, window.zone) == (frozenset(days), start, end, zone)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Mon-Fri 09:00-17:00", "expected 'DAYS HH:MM-HH:MM ZONE'"),
        ("Mon-Fri 09:00-17:00 UTC extra", "expected 'DAYS HH:MM-HH:MM ZONE'"),
        ("mon-fri 09:00-17:00 UTC", "expected a day"),
        ("Monday 09:00-17:00 UTC", "expected a day"),
        ("Mon- 09:00-17:00 UTC", "expected a day"),
        ("Mon 0900-1700 UTC", "expected a time HH:MM"),
        ("Mon 09:00 UTC", "expected a time range"),
        ("Mon 9:00-17:00 UTC", "expected a time HH:MM"),
        ("Mon 09:00-25:00 UTC", "is not a time of day"),
        ("Mon 24:00-06:00 UTC", "is not a time of day"),
        ("Mon 09:60-17:00 UTC", "is not a time of day"),
        ("Mon 09:00-09:00 UTC", "starts and ends at the same time"),
        ("Mon 09:00-17:00 Mars/Olympus", "unknown time zone"),
        ("Mon 09:00-17:00 ../etc/passwd", "is not a time zone name"),
        ("Mon 09:00-17:00 Europe/../UTC", "is not a time zone name"),
    ],
)
def test_windows_that_do_not_parse(text: str, message: str) -> None:
    with pytest.raises(WindowError, match=re.escape(message)):
        parse_window(text)


def test_contains_in_the_windows_own_zone() -> None:
    office = parse_window("Mon-Fri 09:00-17:00 Europe/Berlin")
    assert office.contains(datetime(2025, 1, 6, 8, 0, tzinfo=UTC))  # Monday 09:00 in Berlin (winter, +1)
    assert not office.contains(datetime(2025, 1, 6, 7, 59, tzinfo=UTC))
    assert not office.contains(datetime(2025, 1, 6, 16, 0, tzinfo=UTC))  # 17:00 in Berlin: the end is out
    assert office.contains(datetime(2025, 7, 7, 7, 0, tzinfo=UTC))  # summer: +2
    assert not office.contains(datetime(2025, 1, 11, 10, 0, tzinfo=UTC))  # Saturday


def test_an_overnight_window_ends_the_next_morning() -> None:
    night = parse_window("Fri 22:00-06:00 UTC")
    assert night.contains(datetime(2025, 1, 10, 23, 0, tzinfo=UTC))  # Friday night
    assert night.contains(datetime(2025, 1, 11, 5, 59, tzinfo=UTC))  # Saturday morning
    assert not night.contains(datetime(2025, 1, 11, 6, 0, tzinfo=UTC))
    assert not night.contains(datetime(2025, 1, 10, 5, 0, tzinfo=UTC))  # Friday morning belongs to Thursday


def test_the_whole_day() -> None:
    weekend = parse_window("Sat,Sun 00:00-24:00 UTC")
    assert weekend.contains(datetime(2025, 1, 11, 0, 0, tzinfo=UTC))
    assert weekend.contains(datetime(2025, 1, 12, 23, 59, tzinfo=UTC))
    assert not weekend.contains(datetime(2025, 1, 13, 0, 0, tzinfo=UTC))
    with pytest.raises(WindowError, match="same time"):
        parse_window("Sat 00:00-00:00 UTC")


def test_until_midnight() -> None:
    evening = parse_window("Sun 18:00-24:00 UTC")
    assert evening.contains(datetime(2025, 1, 12, 23, 59, tzinfo=UTC))
    assert not evening.contains(datetime(2025, 1, 13, 0, 0, tzinfo=UTC))
    assert str(evening) == "Sun 18:00-24:00 UTC"


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_window("Mon 09:00-17:00 UTC").contains(datetime(2025, 1, 6, 9, 0))


_ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"])
_TIMES = st.builds(time, st.integers(0, 23), st.integers(0, 59))


@st.composite
def windows(draw: st.DrawFn) -> Window:
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    start, end = draw(_TIMES), draw(_TIMES)
    if start == end:
        end = time((start.hour + 1) % 24, start.minute)
    return Window(days, start, end, draw(_ZONES))


@given(windows())
def test_a_window_reads_back_from_its_text(window: Window) -> None:
    assert parse_window(str(window)) == window


@given(st.lists(st.sampled_from(DAYS), min_size=1, max_size=7))
def test_days_listed_with_commas_are_those_days(names: list[str]) -> None:
    assert parse_days(",".join(names)) == frozenset(DAYS.index(name) for name in names)


@given(st.sampled_from(DAYS), st.sampled_from(DAYS))
def test_a_range_runs_forward_through_the_week(first: str, last: str) -> None:
    days = parse_days(f"{first}-{last}")
    start, stop = DAYS.index(first), DAYS.index(last)
    assert len(days) == (stop - start) % 7 + 1
    assert start in days and stop in days


@given(st.text(max_size=40))
def test_any_text_parses_or_is_refused_with_a_one_line_message(text: str) -> None:
    try:
        window = parse_window(text)
    except WindowError as exc:
        assert "\n" not in str(exc).replace(repr(text), "")
    else:
        assert parse_window(str(window)) == window
