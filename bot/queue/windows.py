"""Merge windows, pure: when a train may land. Outside every window the train is frozen.

A window is one string: ``[DAYS] HH:MM-HH:MM ZONE``, e.g. ``Mon-Fri 09:00-17:00 Europe/Berlin``.

- ``DAYS``: days by their English three-letter names (any case), as a list and/or ranges separated by commas:
  ``Mon-Fri``, ``Sat,Sun``, ``Mon,Wed-Fri``; a range may wrap (``Fri-Mon`` is Fri, Sat, Sun, Mon). Without
  days, every day.
- ``HH:MM-HH:MM``: the local time it opens and closes, ``00:00`` to ``24:00``. A window that closes at or
  before the time it opens runs across midnight into the next day (``Fri 22:00-02:00`` is open on Saturday at
  01:00); the days name the day it opens. Opening and closing at the same time is refused (say ``00:00-24:00``
  for a whole day).
- ``ZONE``: an IANA time zone (``Europe/Berlin``, ``UTC``), read with :mod:`zoneinfo`, which handles daylight
  saving time: the window follows the wall clock. A local time that does not exist (the hour skipped in
  spring) is read as the one an hour later; one that exists twice (autumn) as its first occurrence.

:func:`parse` reads one window (``ValueError`` with a one-line reason), :func:`is_open` says whether any of
the windows is open at an instant, :func:`next_change` when that next changes, so a frozen train can wake
when a window opens.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = r"(\d{2}):(\d{2})"
_WINDOW = re.compile(rf"(?:(?P<days>\S+)\s+)?{_TIME}-{_TIME}\s+(?P<zone>\S+)")
HORIZON = timedelta(days=8)  # the windows repeat every week: no change within eight days means none ever


@dataclass(frozen=True, slots=True)
class Window:
    """Open on ``days`` (0 = Monday) from ``opens`` to ``closes`` minutes after local midnight, in ``zone``;
    ``closes`` may be at most 24 h later than ``opens`` (past 1440: the next day)."""

    days: frozenset[int]
    opens: int
    closes: int
    zone: str
    text: str

    def intervals(self, first: date, last: date) -> Iterable[tuple[datetime, datetime]]:
        """Each opening from local day ``first`` to ``last`` as (opens, closes), aware datetimes."""
        zone = ZoneInfo(self.zone)
        day = first
        while day <= last:
            if day.weekday() in self.days:
                yield _local(day, self.opens, zone), _local(day, self.closes, zone)
            day += timedelta(days=1)

    def __str__(self) -> str:
        return self.text


def _local(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """``minutes`` after local midnight of ``day`` (more than a day: on the next days), as an instant in UTC.

    A wall time in a gap (spring forward) is taken with the offset before the gap, that is an hour later
    on the wall clock; one that occurs twice, as the first (``fold=0``)."""
    extra, minute = divmod(minutes, 24 * 60)
    when = datetime.combine(day + timedelta(days=extra), time(minute // 60, minute % 60), tzinfo=zone)
    return datetime.fromtimestamp(when.timestamp(), tz=UTC)  # as an instant: a gap time moves forward


def parse(text: str) -> Window:
    """One window, or ``ValueError`` saying what is wrong with it."""
    found = _WINDOW.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a merge window: expected e.g. 'Mon-Fri 09:00-17:00 Europe/Berlin'")
    days = _days(found.group("days"), text) if found.group("days") else frozenset(range(7))
    oh, om, ch, cm = (int(found.group(i)) for i in (2, 3, 4, 5))
    opens, closes = _minutes(oh, om, text), _minutes(ch, cm, text)
    if opens == closes:
        raise ValueError(f"{text!r} opens and closes at the same time; write 00:00-24:00 for a whole day")
    if opens == 24 * 60:
        raise ValueError(f"{text!r} opens at 24:00; write 00:00")
    if closes < opens:
        closes += 24 * 60  # across midnight
    zone = found.group("zone")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{text!r}: {zone!r} is not a time zone (expected an IANA name like Europe/Berlin)") from None
    return Window(days, opens, closes, zone, " ".join(text.split()))


def parse_all(texts: Sequence[str]) -> tuple[Window, ...]:
    return tuple(parse(text) for text in texts)


def _minutes(hour: int, minute: int, text: str) -> int:
    if minute > 59 or hour > 24 or (hour == 24 and minute):
        raise ValueError(f"{text!r}: {hour:02d}:{minute:02d} is not a time of day (00:00 to 24:00)")
    return hour * 60 + minute


def _days(spec: str, text: str) -> frozenset[int]:
    found: set[int] = set()
    for part in spec.split(","):
        first, sep, last = part.partition("-")
        start, end = _day(first, text), _day(last, text) if sep else _day(first, text)
        found.update((start + offset) % 7 for offset in range((end - start) % 7 + 1))
    return frozenset(found)


def _day(name: str, text: str) -> int:
    try:
        return DAYS.index(name.lower())
    except ValueError:
        raise ValueError(f"{text!r}: {name!r} is not a day; expected Mon, Tue, Wed, Thu, Fri, Sat or Sun") from None


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
