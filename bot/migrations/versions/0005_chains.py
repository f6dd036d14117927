"""Speculative chains and flaky retries: trains.window_size, attempts.retry_of, attempts.status_floor

``trains.window_size`` (``Train.window``; WINDOW is a reserved word in SQL): how deep the train speculates
now (Zuul's window: one deeper after each landing, halved after each failure); NULL until it first moves,
when the policy's starting window applies. ``trains.adaptive``: with ``adaptive = true``, the batch size
and window the gate last chose from the train's history, and why (for the queue page).
``attempts.retry_of``: the red attempt whose candidate this one tests again, on the same SHA, before its PR is
rejected (``flaky_retries``); ``attempts.retries`` counts how many times the candidate was re-tested so far.
``attempts.status_floor``: statuses of the candidate with an id at or below it were posted before the
re-test and do not count.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 11:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("trains", sa.Column("window_size", sa.Integer(), nullable=True))
    op.add_column("trains", sa.Column("adaptive", postgresql.JSONB(), nullable=True))
    op.add_column(
        "attempts",
        sa.Column("retry_of", sa.Integer(), sa.ForeignKey("attempts.id", ondelete="SET NULL"), nullable=True),
    )
    op.add_column("attempts", sa.Column("retries", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.add_column("attempts", sa.Column("status_floor", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("attempts", "status_floor")
    op.drop_column("attempts", "retries")
    op.drop_column("attempts", "retry_of")
    op.drop_column("trains", "adaptive")
    op.drop_column("trains", "window_size")
