"""The views' reading session and the words they use."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.web import views


async def test_a_view_reads_one_snapshot_and_writes_nothing(engine: AsyncEngine) -> None:
    for _ in range(3):  # fresh and pooled connections alike
        async with views.reading(engine) as session:
            assert await session.scalar(text("SHOW transaction_isolation")) == "repeatable read"
            assert await session.scalar(text("SHOW transaction_read_only")) == "on"
    async with engine.connect() as connection:  # the pool hands connections back as they were
        assert await connection.scalar(text("SHOW transaction_read_only")) == "off"
        assert await connection.scalar(text("SHOW transaction_isolation")) == "read committed"


def test_reasons_read_as_the_bot_writes_them_on_the_pr() -> None:
    assert views.reason_text("checks_failed", {"context": "ci/test", "state": "failure"}) == (
        "failed: ci/test reported failure"
    )
    assert views.reason_text("conflict", {"paths": ["a.py", "b.py"]}) == "failed: conflicts in a.py, b.py"
    assert views.reason_text("merged", {"sha": "a" * 40}) == "merged as aaaaaaaaaa"
    assert views.reason_text("cancelled_by_user", {"by": "maint"}) == "cancelled by maint"
    assert views.reason_text("something_new", None) == "something new"
    assert views.reason_text(None, None) is None
