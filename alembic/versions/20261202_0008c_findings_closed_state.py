"""findings settled for good are ``closed``; ``resolved`` is an operator's claim awaiting a check

Revision ID: 0008c
Revises: 0008a
Create Date: 2026-12-02 08:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008c"
down_revision: str | None = "0008a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUS_BEFORE = "open|resolved|ignored"
STATUS_AFTER = "open|resolved (awaiting a run's check)|closed|ignored"
ACTION_BEFORE = "resolved|ignored|reopened"
ACTION_AFTER = "resolved|ignored|reopened|closed"


def upgrade() -> None:
    # A run that found the drift gone closed the finding for good; it is no claim to check.
    op.execute(
        "UPDATE finding_states SET status = 'closed' "
        "WHERE status = 'resolved' AND closed_by = 'run'"
    )
    _comments(STATUS_AFTER, STATUS_BEFORE, ACTION_AFTER, ACTION_BEFORE)


def downgrade() -> None:
    _comments(STATUS_BEFORE, STATUS_AFTER, ACTION_BEFORE, ACTION_AFTER)
    op.execute("UPDATE finding_states SET status = 'resolved' WHERE status = 'closed'")


def _comments(status: str, status_was: str, action: str, action_was: str) -> None:
    with op.batch_alter_table("finding_states") as batch:
        batch.alter_column(
            "status",
            existing_type=sa.String(length=20),
            existing_nullable=False,
            comment=status,
            existing_comment=status_was,
        )
    with op.batch_alter_table("finding_notes") as batch:
        batch.alter_column(
            "action",
            existing_type=sa.String(length=20),
            existing_nullable=False,
            comment=action,
            existing_comment=action_was,
        )
