"""the exception queue: a finding's owner, and who did each thing to it

Revision ID: 0009_queue_wire
Revises: 0008d
Create Date: 2026-12-02 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import reconcile.db.models

revision: str = "0009_queue_wire"
down_revision: str | None = "0008d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUS_BEFORE = "open|resolved (awaiting a run's check)|closed|ignored"
STATUS_AFTER = "open|assigned|resolved (awaiting a run's check)|closed|ignored"
ACTION_BEFORE = "resolved|ignored|reopened|closed"
ACTION_AFTER = "assigned|commented|corrected|resolved|ignored|reopened|closed"


def upgrade() -> None:
    with op.batch_alter_table("finding_states") as batch:
        batch.add_column(
            sa.Column("owner", sa.Text(), nullable=True, comment="who works on it; null: nobody")
        )
        batch.add_column(
            sa.Column("assigned_at", reconcile.db.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch.alter_column(
            "status",
            existing_type=sa.String(length=20),
            existing_nullable=False,
            comment=STATUS_AFTER,
            existing_comment=STATUS_BEFORE,
        )
    with op.batch_alter_table("finding_notes") as batch:
        batch.add_column(
            sa.Column(
                "actor", sa.Text(), nullable=True, comment="who: a person, console, or the run"
            )
        )
        batch.alter_column(
            "action",
            existing_type=sa.String(length=20),
            existing_nullable=False,
            comment=ACTION_AFTER,
            existing_comment=ACTION_BEFORE,
        )


def downgrade() -> None:
    with op.batch_alter_table("finding_notes") as batch:
        batch.alter_column(
            "action",
            existing_type=sa.String(length=20),
            existing_nullable=False,
            comment=ACTION_BEFORE,
            existing_comment=ACTION_AFTER,
        )
        batch.drop_column("actor")
    op.execute("UPDATE finding_states SET status = 'open' WHERE status = 'assigned'")
    with op.batch_alter_table("finding_states") as batch:
        batch.alter_column(
            "status",
            existing_type=sa.String(length=20),
            existing_nullable=False,
            comment=STATUS_BEFORE,
            existing_comment=STATUS_AFTER,
        )
        batch.drop_column("assigned_at")
        batch.drop_column("owner")
