"""any length for outside text; unreadable Moesif rows kept as received

Revision ID: 0004
Revises: 0006
Create Date: 2026-12-02 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import reconcile.db.models

revision: str = "0004"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "unreadable_ledger_rows",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("moesif_id", sa.Text(), nullable=False),
        sa.Column("transaction_id", sa.Text(), nullable=True),
        sa.Column("company_id", sa.Text(), nullable=True),
        sa.Column("created_at", reconcile.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "raw_json", sa.Text(), nullable=False, comment="the row as received, as ASCII JSON"
        ),
        sa.Column("first_seen_at", reconcile.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", reconcile.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unreadable_ledger_rows")),
        sa.UniqueConstraint("moesif_id", name=op.f("uq_unreadable_ledger_rows_moesif_id")),
    )
    with op.batch_alter_table("unreadable_ledger_rows", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_unreadable_ledger_rows_transaction_id"), ["transaction_id"], unique=False
        )
    with op.batch_alter_table("ledger_rows", schema=None) as batch_op:
        batch_op.alter_column(
            "moesif_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "transaction_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "amount_raw",
            existing_type=sa.String(length=40),
            type_=sa.Text(),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "currency", existing_type=sa.String(length=3), type_=sa.Text(), existing_nullable=True
        )
        batch_op.alter_column(
            "company_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "subscription_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=True,
        )
    with op.batch_alter_table("expected_entries", schema=None) as batch_op:
        batch_op.alter_column(
            "transaction_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "currency", existing_type=sa.String(length=3), type_=sa.Text(), existing_nullable=False
        )
        batch_op.alter_column(
            "stripe_object_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "topup_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "stripe_customer_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "company_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "subscription_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=True,
        )
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.alter_column(
            "transaction_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "company_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "subscription_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "currency", existing_type=sa.String(length=3), type_=sa.Text(), existing_nullable=False
        )
        batch_op.alter_column(
            "amount_sent",
            existing_type=sa.String(length=40),
            type_=sa.Text(),
            existing_nullable=False,
            existing_comment="the amount as sent to Moesif",
        )
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.alter_column(
            "company_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "subscription_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "stripe_customer_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "stripe_object_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "transaction_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "currency", existing_type=sa.String(length=3), type_=sa.Text(), existing_nullable=True
        )
        batch_op.alter_column(
            "moesif_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=True,
        )
    with op.batch_alter_table("moesif_subscriptions", schema=None) as batch_op:
        batch_op.alter_column(
            "subscription_id",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "currency",
            existing_type=sa.String(length=3),
            type_=sa.Text(),
            existing_nullable=True,
            existing_comment="null: Moesif names none",
        )


def downgrade() -> None:
    with op.batch_alter_table("ledger_rows", schema=None) as batch_op:
        batch_op.alter_column(
            "moesif_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "transaction_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "amount_raw",
            existing_type=sa.Text(),
            type_=sa.String(length=40),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "currency", existing_type=sa.Text(), type_=sa.String(length=3), existing_nullable=True
        )
        batch_op.alter_column(
            "company_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "subscription_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=True,
        )
    with op.batch_alter_table("expected_entries", schema=None) as batch_op:
        batch_op.alter_column(
            "transaction_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "currency", existing_type=sa.Text(), type_=sa.String(length=3), existing_nullable=False
        )
        batch_op.alter_column(
            "stripe_object_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "topup_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "stripe_customer_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "company_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "subscription_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=True,
        )
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.alter_column(
            "transaction_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "company_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "subscription_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "currency", existing_type=sa.Text(), type_=sa.String(length=3), existing_nullable=False
        )
        batch_op.alter_column(
            "amount_sent",
            existing_type=sa.Text(),
            type_=sa.String(length=40),
            existing_nullable=False,
            existing_comment="the amount as sent to Moesif",
        )
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.alter_column(
            "company_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "subscription_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "stripe_customer_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "stripe_object_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "transaction_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "currency", existing_type=sa.Text(), type_=sa.String(length=3), existing_nullable=True
        )
        batch_op.alter_column(
            "moesif_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=True,
        )
    with op.batch_alter_table("moesif_subscriptions", schema=None) as batch_op:
        batch_op.alter_column(
            "subscription_id",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "currency",
            existing_type=sa.Text(),
            type_=sa.String(length=3),
            existing_nullable=True,
            existing_comment="null: Moesif names none",
        )
    with op.batch_alter_table("unreadable_ledger_rows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_unreadable_ledger_rows_transaction_id"))
    op.drop_table("unreadable_ledger_rows")
