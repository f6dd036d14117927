"""The queue page's pictures, as geometry the templates draw in inline SVG (no JavaScript): pure functions of
attempts and the time, so a test can read them without a browser.

- :func:`timeline` — the last hours of a train: one row per attempt, from its start to its finish (or now),
  coloured by :func:`outcome`, and one mark per push that landed attempts (several attempts share a mark when
  the chain landed at once).
- :func:`chain_spans` — the active chain: each attempt's bar from its start to now, on one time axis, so that
  the stagger of a speculative chain shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.queue.model import ACTIVE_ATTEMPT_STATES, AttemptState, Reason

if TYPE_CHECKING:  # views builds its rows with these pictures' help: the import goes that way at run time
    from bot.web.views import AttemptRow

HOURS = 6  # how far back the timeline looks
WIDTH = 1000  # the SVG's viewBox width
LABEL = 96  # the label column, left of the time axis
RIGHT = 14  # room right of "now"
TOP = 22  # the tick labels above the rows
ROW = 18  # one attempt's row
BAR = 12  # one attempt's bar, inside its row
MIN_BAR = 3.0  # an attempt of a few seconds still shows

OUTCOME_WORDS = {
    "running": "in progress",
    "landed": "landed",
    "optimistic": "landed optimistically (a green candidate behind it landed it)",
    "failed": "failed",
    "bisected": "red batch, bisected",
    "retried": "red, re-tested on the same candidate",
    "abandoned": "given up (rebuilt or cancelled)",
}


def outcome(attempt: AttemptRow) -> str:
    """What became of an attempt, as the timeline colours it (a key of :data:`OUTCOME_WORDS`)."""
    if attempt.state in {state.value for state in ACTIVE_ATTEMPT_STATES}:
        return "running"
    if attempt.state == AttemptState.DONE.value:
        return "optimistic" if attempt.optimistic else "landed"
    if attempt.reason == Reason.BISECTED.value:
        return "bisected"
    if attempt.reason == Reason.RETRIED.value:
        return "retried"
    if attempt.state == AttemptState.FAILED.value:
        return "failed"
    return "abandoned"


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Bar:
    attempt_id: int
    outcome: str
    x: float
    y: float
    width: float
    label: str  # left of the axis: "attempt 12"
    title: str  # the tooltip, and the table's line: PRs, outcome, times
    clipped: bool  # it started before the timeline does


@dataclass(frozen=True, slots=True)
class Landing:
    """One push that moved the base: the attempts it landed."""

    sha: str
    at: datetime
    x: float
    attempt_ids: tuple[int, ...]
    pulls: tuple[int, ...]
    title: str


@dataclass(frozen=True, slots=True)
class Timeline:
    since: datetime
    now: datetime
    hours: int
    width: int
    height: float
    axis_left: float
    axis_right: float
    ticks: tuple[Tick, ...]
    bars: tuple[Bar, ...]
    landings: tuple[Landing, ...]

    @property
    def bottom(self) -> float:
        return self.height - 2


def _numbers(attempt: AttemptRow) -> str:
    return ", ".join(f"#{pull.number}" for pull in attempt.pulls) or "no PR"


def timeline(attempts: Sequence[AttemptRow], now: datetime, hours: int = HOURS) -> Timeline:
    """The attempts that ran in the last ``hours`` (oldest at the top) and the pushes that landed some."""
    since = now - timedelta(hours=hours)
    left, right = float(LABEL), float(WIDTH - RIGHT)
    span = (now - since).total_seconds()

    def x(when: datetime) -> float:
        seconds = min(max((when - since).total_seconds(), 0.0), span)
        return round(left + seconds / span * (right - left), 1)

    shown = sorted(
        (a for a in attempts if (a.finished_at or now) >= since and a.started_at <= now),
        key=lambda a: (a.started_at, a.id),
    )
    bars = []
    for index, attempt in enumerate(shown):
        start, end = x(attempt.started_at), x(attempt.finished_at or now)
        kind = outcome(attempt)
        ended = f"until {attempt.finished_at:%H:%M:%S %Z}" if attempt.finished_at else "still running"
        started = f"{attempt.started_at:%H:%M:%S %Z}".strip()
        title = f"attempt {attempt.id}: {_numbers(attempt)}, {OUTCOME_WORDS[kind]}; from {started} {ended.strip()}"
        bars.append(
            Bar(
                attempt_id=attempt.id,
                outcome=kind,
                x=min(start, right - MIN_BAR),
                y=TOP + index * ROW + (ROW - BAR) / 2,
                width=round(max(end - start, MIN_BAR), 1),
                label=f"attempt {attempt.id}",
                title=title,
                clipped=attempt.started_at < since,
            )
        )
    pushes: dict[str, list[AttemptRow]] = {}
    for attempt in shown:
        if attempt.state == AttemptState.DONE.value and attempt.landed_sha and attempt.finished_at:
            pushes.setdefault(attempt.landed_sha, []).append(attempt)
    landings = []
    for sha, landed in pushes.items():
        at = max(a.finished_at for a in landed if a.finished_at is not None)
        ids = tuple(a.id for a in landed)
        pulls = tuple(pull.number for a in landed for pull in a.pulls)
        names = ", ".join(f"#{number}" for number in pulls)
        title = f"pushed {sha[:10]} at {at:%H:%M:%S %Z}: {len(ids)} attempt{'s' if len(ids) != 1 else ''} ({names})"
        landings.append(Landing(sha, at, x(at), ids, pulls, title))
    landings.sort(key=lambda landing: landing.at)
    ticks = tuple(
        Tick(x(since + timedelta(hours=hour)), "now" if hour == hours else f"{hours - hour} h ago")
        for hour in range(hours + 1)
    )
    return Timeline(
        since=since,
        now=now,
        hours=hours,
        width=WIDTH,
        height=TOP + max(len(bars), 1) * ROW + 4,
        axis_left=left,
        axis_right=right,
        ticks=ticks,
        bars=tuple(bars),
        landings=tuple(landings),
    )


@dataclass(frozen=True, slots=True)
class Span:
    """Where an active attempt's bar lies on the chain's time axis, in percent of its width."""

    start: float
    width: float


def chain_spans(attempts: Sequence[AttemptRow], now: datetime) -> dict[int, Span]:
    """Each attempt of the chain from its start to now, on one axis from the chain's first start to now."""
    if not attempts:
        return {}
    first = min(attempt.started_at for attempt in attempts)
    total = max((now - first).total_seconds(), 1.0)
    spans = {}
    for attempt in attempts:
        start = min(100.0, max(0.0, (attempt.started_at - first).total_seconds() / total * 100))
        start = min(start, 99.0)
        spans[attempt.id] = Span(round(start, 1), round(max(100.0 - start, 1.0), 1))
    return spans
