"""Merge windows, pure: ``"Mon-Fri 09:00-17:00 Europe/Berlin"`` → :class:`Window`.

The grammar (each rule is a case in ``tests/test_windows.py``)::

    window := days " " time "-" time " " zone
    days   := span ("," span)*          e.g. "Mon-Fri", "Sat,Sun", "Mon-Wed,Fri"
    span   := day | day "-" day         a span may wrap the week: "Fri-Mon" is Fri, Sat, Sun, Mon
    day    := Mon | Tue | Wed | Thu | Fri | Sat | Sun
    time   := HH ":" MM                 00:00 to 23:59; the end may also be 24:00 (midnight, end of day)
    zone   := an IANA time zone name that zoneinfo knows ("UTC", "Europe/Berlin")

Single spaces between the parts (extra blanks around them are ignored); day names as written above. A window
whose end is earlier than its start runs over midnight into the next day ("Fri 22:00-06:00 UTC" ends on
Saturday morning); start and end may not be equal, but 00:00-24:00 is the whole day. Windows are parsed and
what the ``windows`` setting holds (per repository and globally): outside every window the train is frozen.

:func:`parse_window` reads one window (:class:`WindowError`, a ``ValueError``, with a one-line reason),
:func:`is_open` says whether any of the windows is open at an instant, :func:`next_change` when that next
changes, so that a frozen train can wake when a window opens. ``zoneinfo`` handles daylight saving time: a
window follows the wall clock; a local time that does not exist (the hour skipped in spring) is read as the
one an hour later, one that exists twice (autumn) as its first occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_TIME = re.compile(r"([0-9]{2}):([0-9]{2})", re.ASCII)
_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*", re.ASCII)
MIDNIGHT_END = time(0, 0)  # an end of 24:00 is kept as 00:00 of the next day


class WindowError(ValueError):
    """The text is not a window; the message says what is wrong, in one line."""


@dataclass(frozen=True, slots=True)
class Window:
    """Days of the week (0 = Monday) on which the window opens at ``start``, for ``start``..``end`` in ``zone``."""

    days: frozenset[int]
    start: time
    end: time  # 00:00 with ``start`` later: up to midnight
    zone: str

    @property
    def overnight(self) -> bool:
        """The window ends on the day after it opens (its end is at or before its start, e.g. 22:00-06:00)."""
        return self.end <= self.start

    def contains(self, moment: datetime) -> bool:
        """Whether the (timezone-aware) ``moment`` lies inside the window, in the window's own zone."""
        if moment.utcoffset() is None:
            raise ValueError("a moment must be timezone-aware")
        local = moment.astimezone(ZoneInfo(self.zone))
        day, now = local.weekday(), local.time().replace(tzinfo=None)
        if not self.overnight:
            return day in self.days and self.start <= now < self.end
        yesterday = (day - 1) % 7
        return (day in self.days and now >= self.start) or (yesterday in self.days and now < self.end)

    def intervals(self, first: date, last: date) -> Iterable[tuple[datetime, datetime]]:
        """Each opening from local day ``first`` to ``last`` as (opens, closes), instants in UTC."""
        zone = ZoneInfo(self.zone)
        opens = self.start.hour * 60 + self.start.minute
        closes = self.end.hour * 60 + self.end.minute + (24 * 60 if self.overnight else 0)
        day = first
        while day <= last:
            if day.weekday() in self.days:
                yield _local(day, opens, zone), _local(day, closes, zone)
            day += timedelta(days=1)

    def __str__(self) -> str:
        end = "24:00" if self.end == MIDNIGHT_END else self.end.strftime("%H:%M")
        return f"{_days_text(self.days)} {self.start.strftime('%H:%M')}-{end} {self.zone}"


def parse_window(text: str) -> Window:
    """``text`` as a window, or :class:`WindowError` saying why not."""
    parts = text.split()
    if len(parts) != 3:
        raise WindowError(f"expected 'DAYS HH:MM-HH:MM ZONE' (e.g. 'Mon-Fri 09:00-17:00 Europe/Berlin'), got {text!r}")
    days_text, times_text, zone = parts
    days = parse_days(days_text)
    start_text, dash, end_text = times_text.partition("-")
    if not dash:
        raise WindowError(f"expected a time range HH:MM-HH:MM, got {times_text!r}")
    start = _parse_time(start_text, end=False)
    end = _parse_time(end_text, end=True)
    if start == end and end_text != "24:00":  # 00:00-24:00 is the whole day
        raise WindowError(f"the window {times_text!r} starts and ends at the same time")
    return Window(days, start, end, parse_zone(zone))


def parse_days(text: str) -> frozenset[int]:
    """``Mon-Fri``, ``Sat,Sun``, ``Fri-Mon`` (wrapping the week) → the weekday numbers (0 = Monday)."""
    days: set[int] = set()
    for span in text.split(","):
        first, dash, last = span.partition("-")
        start = _day(first)
        stop = _day(last) if dash else start
        days.update((start + offset) % 7 for offset in range((stop - start) % 7 + 1))
    return frozenset(days)


def parse_zone(name: str) -> str:
    """An IANA zone name zoneinfo knows, as given."""
    if not _ZONE.fullmatch(name) or ".." in name:
        raise WindowError(f"{name!r} is not a time zone name (e.g. Europe/Berlin or UTC)")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise WindowError(f"unknown time zone {name!r} (e.g. Europe/Berlin or UTC)") from None
    return name


def _day(text: str) -> int:
    if text not in DAYS:
        raise WindowError(f"expected a day {', '.join(DAYS)}, got {text!r}")
    return DAYS.index(text)


def _parse_time(text: str, *, end: bool) -> time:
    found = _TIME.fullmatch(text)
    if found is None:
        raise WindowError(f"expected a time HH:MM, got {text!r}")
    hours, minutes = int(found[1]), int(found[2])
    if end and (hours, minutes) == (24, 0):
        return MIDNIGHT_END
    if hours > 23 or minutes > 59:
        raise WindowError(f"{text!r} is not a time of day (00:00 to 23:59{', or 24:00' if end else ''})")
    return time(hours, minutes)


def _days_text(days: frozenset[int]) -> str:
    """The days as the shortest text ``parse_days`` reads back: runs of three or more as ``Mon-Fri``."""
    if len(days) == 7:
        return "Mon-Sun"
    ordered = sorted(days)
    runs: list[list[int]] = []
    for day in ordered:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][-1] == 6:  # Sat-Mon wraps the week: one run
        runs[0] = runs.pop() + runs[0]
    spans = [f"{DAYS[run[0]]}-{DAYS[run[-1]]}" if len(run) > 2 else ",".join(DAYS[d] for d in run) for run in runs]
    return ",".join(spans)


HORIZON = timedelta(days=8)  # the windows repeat every week: no change within eight days means none ever


def parse_all(texts: Sequence[str]) -> tuple[Window, ...]:
    return tuple(parse_window(text) for text in texts)


def _local(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """``minutes`` after local midnight of ``day`` (more than a day: on the next days), as an instant in UTC.

    A wall time in a gap (spring forward) is taken with the offset before the gap, that is an hour later
    on the wall clock; one that occurs twice, as the first (``fold=0``)."""
    extra, minute = divmod(minutes, 24 * 60)
    when = datetime.combine(day + timedelta(days=extra), time(minute // 60, minute % 60), tzinfo=zone)
    return datetime.fromtimestamp(when.timestamp(), tz=UTC)  # as an instant: a gap time moves forward


def _openings(windows: Sequence[Window], now: datetime) -> list[tuple[datetime, datetime]]:
    """Every opening of the windows from two days before ``now`` to beyond the horizon, merged where they
    overlap or touch, in order."""
    spans: list[tuple[datetime, datetime]] = []
    for window in windows:
        local = now.astimezone(ZoneInfo(window.zone)).date()
        found = window.intervals(local - timedelta(days=2), local + HORIZON + timedelta(days=1))
        spans.extend((opens, closes) for opens, closes in found if opens < closes)  # a skipped hour is empty
    merged: list[tuple[datetime, datetime]] = []
    for opens, closes in sorted(spans):
        if merged and opens <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], closes))
        else:
            merged.append((opens, closes))
    return merged


def is_open(windows: Sequence[Window], now: datetime) -> bool:
    """Whether merging is allowed at ``now``: always without windows, else inside one of them."""
    if not windows:
        return True
    return any(opens <= now < closes for opens, closes in _openings(windows, now))


def next_change(windows: Sequence[Window], now: datetime) -> datetime | None:
    """The first instant after ``now`` at which :func:`is_open` changes, or None when it never does (no
    windows, or windows that together are open all week)."""
    if not windows:
        return None
    for opens, closes in _openings(windows, now):
        change = opens if opens > now else closes if closes > now else None
        if change is not None:
            return change if change - now <= HORIZON else None
    return None
