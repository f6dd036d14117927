"""The merge window grammar (bot.queue.windows): every rule of its docstring is a case here."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.queue.windows import DAYS, Window, WindowError, is_open, next_change, parse_all, parse_days, parse_window


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


# -- whether a window is open, and when that changes (the merge freeze acts on these) ----------------------

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = parse_all(["Mon-Fri 09:00-17:00 Europe/Berlin"])


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]



@pytest.mark.parametrize(
    ("when", "open_"),
    [
        (berlin(2026, 6, 3, 8, 59), False),  # a Wednesday, before nine
        (berlin(2026, 6, 3, 9, 0), True),
        (berlin(2026, 6, 3, 16, 59), True),
        (berlin(2026, 6, 3, 17, 0), False),  # closing time is outside
        (berlin(2026, 6, 6, 12, 0), False),  # Saturday
        (datetime(2026, 6, 3, 7, 30, tzinfo=UTC), True),  # summer: CEST, 09:30 in Berlin
        (datetime(2026, 1, 7, 7, 30, tzinfo=UTC), False),  # winter: CET, 08:30 in Berlin
        (datetime(2026, 1, 7, 15, 30, tzinfo=UTC), True),  # winter, 16:30 in Berlin
        (datetime(2026, 6, 3, 15, 30, tzinfo=UTC), False),  # summer, 17:30 in Berlin
    ],
)
def test_office_hours_follow_the_wall_clock(when: datetime, open_: bool) -> None:
    assert is_open(OFFICE, when) is open_


def test_next_change_is_when_the_window_opens_or_closes() -> None:
    assert next_change(OFFICE, berlin(2026, 6, 3, 8, 0)) == berlin(2026, 6, 3, 9, 0)
    assert next_change(OFFICE, berlin(2026, 6, 3, 9, 0)) == berlin(2026, 6, 3, 17, 0)
    assert next_change(OFFICE, berlin(2026, 6, 5, 18, 0)) == berlin(2026, 6, 8, 9, 0)  # Friday evening → Monday


def test_a_window_across_midnight_is_open_on_the_next_morning() -> None:
    late = parse_all(["Fri 22:00-02:00 UTC"])
    assert is_open(late, datetime(2026, 6, 5, 23, 0, tzinfo=UTC))  # Friday night
    assert is_open(late, datetime(2026, 6, 6, 1, 59, tzinfo=UTC))  # Saturday morning
    assert not is_open(late, datetime(2026, 6, 6, 2, 0, tzinfo=UTC))
    assert not is_open(late, datetime(2026, 6, 4, 23, 0, tzinfo=UTC))  # Thursday night: not a Friday
    assert next_change(late, datetime(2026, 6, 6, 1, 0, tzinfo=UTC)) == datetime(2026, 6, 6, 2, 0, tzinfo=UTC)


def test_daylight_saving_switches() -> None:
    early = parse_all(["Sun 01:00-04:00 Europe/Berlin"])
    # 2026-03-29: clocks jump from 02:00 CET to 03:00 CEST; the window is two real hours long.
    assert next_change(early, datetime(2026, 3, 29, 0, 30, tzinfo=UTC)) == datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
    assert is_open(early, datetime(2026, 3, 29, 0, 0, tzinfo=UTC))  # 01:00 CET
    assert not is_open(early, datetime(2026, 3, 29, 2, 0, tzinfo=UTC))  # 04:00 CEST
    # 2026-10-25: clocks fall from 03:00 CEST to 02:00 CET; the window is four real hours long.
    assert next_change(early, datetime(2026, 10, 24, 23, 30, tzinfo=UTC)) == datetime(2026, 10, 25, 3, 0, tzinfo=UTC)
    # A window opening in the skipped hour opens when the clock says 03:00 (an hour later on the wall).
    gap = parse_all(["Sun 02:30-05:00 Europe/Berlin"])
    assert next_change(gap, datetime(2026, 3, 28, 23, 0, tzinfo=UTC)) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    # One that lies wholly in the skipped hour does not open that day at all.
    skipped = parse_all(["Sun 02:00-03:00 Europe/Berlin"])
    assert not is_open(skipped, datetime(2026, 3, 29, 1, 0, tzinfo=UTC))
    assert next_change(skipped, datetime(2026, 3, 28, 12, 0, tzinfo=UTC)) == datetime(2026, 4, 5, 0, 0, tzinfo=UTC)


def test_several_windows_are_one_union() -> None:
    both = parse_all(["Mon-Fri 09:00-12:00 UTC", "Mon-Fri 12:00-17:00 UTC", "Sat 10:00-11:00 Europe/London"])
    noon = datetime(2026, 6, 3, 12, 0, tzinfo=UTC)
    assert is_open(both, noon)
    assert next_change(both, datetime(2026, 6, 3, 10, 0, tzinfo=UTC)) == datetime(2026, 6, 3, 17, 0, tzinfo=UTC)
    assert next_change(both, datetime(2026, 6, 5, 18, 0, tzinfo=UTC)) == datetime(2026, 6, 6, 9, 0, tzinfo=UTC)


def test_no_windows_or_always_open_never_changes() -> None:
    now = datetime(2026, 6, 3, 12, 0, tzinfo=UTC)
    assert is_open((), now) and next_change((), now) is None
    always = parse_all(["Mon-Sun 00:00-24:00 Europe/Berlin"])
    assert is_open(always, now) and next_change(always, now) is None
    assert next_change(parse_all(["Mon-Sun 00:00-24:00 UTC"]), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) is None



# -- properties ------------------------------------------------------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "America/Santiago"]
hhmm = st.tuples(st.integers(0, 23), st.integers(0, 59))
instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
).map(lambda when: when.replace(second=0, microsecond=0))


@st.composite
def window_texts(draw: st.DrawFn) -> str:
    days = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=3, unique=True))
    spec = ",".join(days)
    if draw(st.booleans()):
        spec = f"{draw(st.sampled_from(DAYS))}-{draw(st.sampled_from(DAYS))}"
    (oh, om), (ch, cm) = draw(hhmm), draw(hhmm)
    if (oh, om) == (ch, cm):
        ch = (ch + 1) % 24
    return f"{spec} {oh:02d}:{om:02d}-{ch:02d}:{cm:02d} {draw(st.sampled_from(ZONES))}"


@settings(max_examples=200, deadline=None)
@given(st.lists(window_texts(), min_size=1, max_size=3), instants, st.floats(0.001, 0.999))
def test_next_change_is_the_first_change(texts: list[str], now: datetime, fraction: float) -> None:
    """Between now and the next change nothing changes; at the change it does; with no change foreseen the
    windows are open (or closed) all the next fortnight."""
    windows = parse_all(texts)
    state = is_open(windows, now)
    change = next_change(windows, now)
    if change is None:
        assert all(is_open(windows, now + timedelta(hours=h)) is state for h in range(0, 24 * 14, 5))
        return
    assert change > now
    assert is_open(windows, change) is not state
    assert is_open(windows, now + (change - now) * fraction) is state
    assert is_open(windows, change - timedelta(microseconds=1)) is state


@settings(max_examples=100, deadline=None)
@given(window_texts(), instants)
def test_open_means_inside_a_local_opening(text: str, now: datetime) -> None:
    """An independent reading: open exactly when the wall clock is within the window on a listed day (or,
    across midnight, on the day after one), away from the skipped and repeated hours."""
    window = parse_window(text)
    local = now.astimezone(ZoneInfo(window.zone))
    if local.utcoffset() != (local + timedelta(hours=3)).utcoffset() or local.utcoffset() != (
        local - timedelta(hours=27)
    ).utcoffset():
        return  # near a daylight saving switch the wall clock is not a plain reading
    minute = local.hour * 60 + local.minute
    opens = window.start.hour * 60 + window.start.minute
    closes = window.end.hour * 60 + window.end.minute + (24 * 60 if window.overnight else 0)
    today = local.weekday() in window.days and opens <= minute < closes
    yesterday = (local.weekday() - 1) % 7 in window.days and opens <= minute + 24 * 60 < closes
    assert is_open((window,), now) is (today or yesterday)
