"""each kept Moesif subscription's available balance, as last read, for blocked customers

Revision ID: 0009_notice_wire
Revises: 0009_queue_wire
Create Date: 2026-12-02 15:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from reconcile.db.models import UTCDateTime

revision: str = "0009_notice_wire"
down_revision: str | None = "0009_queue_wire"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("moesif_subscriptions") as batch:
        batch.add_column(
            sa.Column(
                "available_balance_minor",
                sa.BigInteger(),
                nullable=True,
                comment="minor units of the currency; null: not read yet",
            )
        )
        batch.add_column(sa.Column("balance_read_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("moesif_subscriptions") as batch:
        batch.drop_column("balance_read_at")
        batch.drop_column("available_balance_minor")
