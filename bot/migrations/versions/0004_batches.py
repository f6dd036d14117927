"""Batches and bisection: entries.single and attempts.split_from

``entries.single``: the PR was queued with ``/merge single`` and is tested in a batch of its own.
``attempts.split_from``: the red batch (a failed attempt, reason ``bisected``) an attempt is a part of; the
parts of a bisection keep their grouping when they are rebuilt, and the batch's outcome (a culprit found,
or a flaky failure when every part passed) is recorded in that failed attempt's ``reason_detail.outcome``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("entries", sa.Column("single", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.add_column(
        "attempts",
        sa.Column("split_from", sa.Integer(), sa.ForeignKey("attempts.id", ondelete="SET NULL"), nullable=True),
    )
    op.create_index(
        "ix_attempts_unsettled_bisections",
        "attempts",
        ["train_id"],
        postgresql_where=sa.text("reason = 'bisected' AND (reason_detail ->> 'outcome') IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_attempts_unsettled_bisections", table_name="attempts")
    op.drop_column("attempts", "split_from")
    op.drop_column("entries", "single")
