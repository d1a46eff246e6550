"""topup idempotency keys

Revision ID: 0008d
Revises: 0008c
Create Date: 2026-12-02 08:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import reconcile.db.models

revision: str = "0008d"
down_revision: str | None = "0008c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "topup_keys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column(
            "request_hash",
            sa.String(length=64),
            nullable=False,
            comment="sha256 of customer, amount in minor units and currency",
        ),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("created_at", reconcile.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "claimed_until",
            reconcile.db.models.UTCDateTime(timezone=True),
            nullable=False,
            comment="until when the request charging under the key holds it",
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("answer_status", sa.Integer(), nullable=True),
        sa.Column("answer_body", sa.Text(), nullable=True, comment="the answer as JSON text"),
        sa.Column("answered_at", reconcile.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topup_keys")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_topup_keys_idempotency_key")),
    )


def downgrade() -> None:
    op.drop_table("topup_keys")
