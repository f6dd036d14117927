"""entries.told_at: when the PR was told its entry's outcome

An entry becomes final in one transaction and the PR is told (the ``merge-bot`` status, the outcome
comment, the queue label removed) after it: a crash in between used to leave the PR showing "pending" for
good. ``told_at`` stays NULL until the telling is done, so whoever holds the train next tells it again;
``tell_after`` spaces out the tries while the forge refuses.
Entries already final when this migration runs were told by the code of their time.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 08:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("entries", sa.Column("told_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("entries", sa.Column("tell_after", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE entries SET told_at = coalesce(finished_at, now()) WHERE finished_at IS NOT NULL")
    op.create_index(
        "ix_entries_untold",
        "entries",
        ["train_id"],
        unique=False,
        postgresql_where=sa.text("finished_at IS NOT NULL AND told_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_entries_untold",
        table_name="entries",
        postgresql_where=sa.text("finished_at IS NOT NULL AND told_at IS NULL"),
    )
    op.drop_column("entries", "tell_after")
    op.drop_column("entries", "told_at")
