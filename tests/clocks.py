"""The clocks tests hand the bot: :class:`StillClock` stands still until the test moves it
(``clock.at += timedelta(...)``); :class:`ShiftedClock` runs at the real pace from where the test sets it
(``clock.jump_to(when)``), for a running bot whose waits and polls must go on."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class StillClock:
    def __init__(self, now: datetime | None = None) -> None:
        self.at = now or datetime.now(UTC)

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.at.timestamp()


class ShiftedClock:
    def __init__(self, start: datetime) -> None:
        self._offset = start - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def monotonic(self) -> float:
        return time.monotonic()

    def jump_to(self, when: datetime) -> None:
        self._offset = when - datetime.now(UTC)
