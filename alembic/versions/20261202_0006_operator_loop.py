"""findings lifecycle, operator notes and the notification outbox

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-02 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import reconcile.db.models

revision: str = "0006"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = reconcile.db.models.UTCDateTime(timezone=True)
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "finding_states",
        sa.Column("finding_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("transaction_id", sa.Text(), nullable=True),
        sa.Column("moesif_id", sa.Text(), nullable=True),
        sa.Column("company_id", sa.Text(), nullable=True),
        sa.Column("subscription_id", sa.Text(), nullable=True),
        sa.Column("stripe_customer_id", sa.Text(), nullable=True),
        sa.Column("stripe_object_id", sa.Text(), nullable=True),
        sa.Column("entry_type", sa.Text(), nullable=True),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("stripe_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("moesif_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column(
            "delta_minor",
            sa.BigInteger(),
            nullable=True,
            comment="the correction the balance needs; positive: the customer is owed",
        ),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False, comment="open|resolved|ignored"),
        sa.Column("first_seen_run_id", sa.String(length=40), nullable=False),
        sa.Column("first_seen_at", UTC_TIME, nullable=False),
        sa.Column("last_seen_run_id", sa.String(length=40), nullable=False),
        sa.Column("last_seen_at", UTC_TIME, nullable=False),
        sa.Column("runs_seen", sa.Integer(), nullable=False),
        sa.Column("closed_at", UTC_TIME, nullable=True),
        sa.Column("closed_by", sa.String(length=20), nullable=True, comment="run|operator"),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("finding_id", name=op.f("pk_finding_states")),
    )
    with op.batch_alter_table("finding_states", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_finding_states_category"), ["category"], unique=False)
        batch_op.create_index(batch_op.f("ix_finding_states_status"), ["status"], unique=False)

    op.create_table(
        "finding_notes",
        sa.Column("id", ROW_ID, nullable=False),
        sa.Column("finding_id", sa.String(length=64), nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column(
            "action", sa.String(length=20), nullable=False, comment="resolved|ignored|reopened"
        ),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False, comment="cli|page"),
        sa.ForeignKeyConstraint(
            ["finding_id"],
            ["finding_states.finding_id"],
            name=op.f("fk_finding_notes_finding_id_finding_states"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finding_notes")),
    )
    with op.batch_alter_table("finding_notes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_finding_notes_finding_id"), ["finding_id"], unique=False
        )

    op.create_table(
        "notifications",
        sa.Column("id", ROW_ID, nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False, comment="the JSON body, sent unchanged"),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("delivered_at", UTC_TIME, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("run_id", name=op.f("uq_notifications_run_id")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notifications_delivered_at"), ["delivered_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_delivered_at"))
    op.drop_table("notifications")
    with op.batch_alter_table("finding_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_finding_notes_finding_id"))
    op.drop_table("finding_notes")
    with op.batch_alter_table("finding_states", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_finding_states_status"))
        batch_op.drop_index(batch_op.f("ix_finding_states_category"))
    op.drop_table("finding_states")
