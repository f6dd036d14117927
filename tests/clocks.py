"""The clock tests hand the bot: it stands still until the test moves it (``clock.at += timedelta(...)``)."""

from __future__ import annotations

from datetime import UTC, datetime


class StillClock:
    def __init__(self, now: datetime | None = None) -> None:
        self.at = now or datetime.now(UTC)

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.at.timestamp()
