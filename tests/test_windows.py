"""Merge windows (bot/queue/windows.py): the grammar, whether a window is open, and when that next changes,
across midnight and daylight saving time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import ConfigError, load_settings
from bot.queue.windows import DAYS, is_open, next_change, parse, parse_all

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = parse_all(["Mon-Fri 09:00-17:00 Europe/Berlin"])


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "days", "opens", "closes", "zone"),
    [
        ("Mon-Fri 09:00-17:00 Europe/Berlin", {0, 1, 2, 3, 4}, 540, 1020, "Europe/Berlin"),
        ("sat,SUN 10:30-12:00 UTC", {5, 6}, 630, 720, "UTC"),
        ("Mon,Wed-Fri 00:00-24:00 UTC", {0, 2, 3, 4}, 0, 1440, "UTC"),
        ("Fri-Mon 08:00-09:00 America/New_York", {4, 5, 6, 0}, 480, 540, "America/New_York"),
        ("22:00-02:00 Asia/Tokyo", set(range(7)), 1320, 1560, "Asia/Tokyo"),
        ("  Tue   09:00-10:00   UTC ", {1}, 540, 600, "UTC"),
    ],
)
def test_parse(text: str, days: set[int], opens: int, closes: int, zone: str) -> None:
    window = parse(text)
    assert (set(window.days), window.opens, window.closes, window.zone) == (days, opens, closes, zone)
    assert parse(str(window)) == window


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "is not a merge window"),
        ("Mon-Fri 09:00-17:00", "is not a merge window"),
        ("Mon-Fri 9:00-17:00 UTC", "is not a merge window"),
        ("Mon-Fri 09:00 - 17:00 UTC", "is not a merge window"),
        ("Mon-Fro 09:00-17:00 UTC", "'Fro' is not a day"),
        ("Monday 09:00-17:00 UTC", "'Monday' is not a day"),
        ("Mon 25:00-26:00 UTC", "25:00 is not a time of day"),
        ("Mon 09:60-10:00 UTC", "09:60 is not a time of day"),
        ("Mon 24:00-10:00 UTC", "opens at 24:00"),
        ("Mon 09:00-09:00 UTC", "opens and closes at the same time"),
        ("Mon 09:00-17:00 Mars/Olympus", "is not a time zone"),
        ("Mon 09:00-17:00 ../../etc/passwd", "is not a time zone"),
    ],
)
def test_parse_refuses_with_a_reason(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse(text)


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
    always = parse_all(["00:00-24:00 Europe/Berlin"])
    assert is_open(always, now) and next_change(always, now) is None
    assert next_change(parse_all(["Mon-Sun 00:00-24:00 UTC"]), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) is None


def test_the_setting_is_validated_and_split_on_semicolons(tmp_path: object) -> None:
    env = {"MERGE_BOT_WEBHOOK_SECRET": "s", "MERGE_BOT_MERGE_WINDOWS": "Mon,Wed 09:00-17:00 UTC; Sat  10:00-11:00 UTC"}
    assert load_settings(env).merge_windows == ("Mon,Wed 09:00-17:00 UTC", "Sat 10:00-11:00 UTC")
    with pytest.raises(ConfigError, match=r"merge_windows \(MERGE_BOT_MERGE_WINDOWS\).*'Fro' is not a day"):
        load_settings({**env, "MERGE_BOT_MERGE_WINDOWS": "Mon-Fro 09:00-17:00 UTC"})


# -- properties ------------------------------------------------------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "America/Santiago"]
hhmm = st.tuples(st.integers(0, 23), st.integers(0, 59))
instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
).map(lambda when: when.replace(second=0, microsecond=0))


@st.composite
def window_texts(draw: st.DrawFn) -> str:
    days = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=3, unique=True))
    spec = ",".join(day.title() for day in days)
    if draw(st.booleans()):
        spec = f"{draw(st.sampled_from(DAYS)).title()}-{draw(st.sampled_from(DAYS)).title()}"
    (oh, om), (ch, cm) = draw(hhmm), draw(hhmm)
    if (oh, om) == (ch, cm):
        ch = (ch + 1) % 24
    return f"{spec} {oh:02d}:{om:02d}-{ch:02d}:{cm:02d} {draw(st.sampled_from(ZONES))}"


@given(window_texts())
def test_a_window_written_out_reads_back_the_same(text: str) -> None:
    window = parse(text)
    assert parse(str(window)) == window
    assert 0 < window.closes - window.opens <= 24 * 60


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
    window = parse(text)
    local = now.astimezone(ZoneInfo(window.zone))
    if local.utcoffset() != (local + timedelta(hours=3)).utcoffset() or local.utcoffset() != (
        local - timedelta(hours=27)
    ).utcoffset():
        return  # near a daylight saving switch the wall clock is not a plain reading
    minute = local.hour * 60 + local.minute
    today = local.weekday() in window.days and window.opens <= minute < window.closes
    yesterday = (local.weekday() - 1) % 7 in window.days and window.opens <= minute + 24 * 60 < window.closes
    assert is_open((window,), now) is (today or yesterday)
