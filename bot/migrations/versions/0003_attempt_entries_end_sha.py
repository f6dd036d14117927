"""attempt_entries.end_sha: the commit of the candidate where each entry's own change ends

An attempt's candidate stacks its entries' PRs in order (rebase: each PR's commits rebased in turn; merge: a
merge commit per PR; squash: a commit per PR), so every entry's change ends at its own commit of that chain.
That commit is what the entry is marked merged at when one fast-forward lands several entries.
Every attempt made before this migration carries one entry, whose change ends at the candidate itself.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("attempt_entries", sa.Column("end_sha", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE attempt_entries SET end_sha = attempts.candidate_sha FROM attempts"
        " WHERE attempts.id = attempt_entries.attempt_id AND attempts.candidate_sha IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_column("attempt_entries", "end_sha")
