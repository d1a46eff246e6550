"""finding ids on each run's findings, and ledger rows Moesif no longer returns

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-02 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import reconcile.db.models

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = reconcile.db.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("finding_id", sa.String(length=64), nullable=True))
        batch.create_index("ix_findings_finding_id", ["finding_id"])
    with op.batch_alter_table("ledger_rows") as batch:
        batch.add_column(
            sa.Column(
                "gone_at",
                UTC_TIME,
                nullable=True,
                comment="when a read of its period no longer returned it; it matches nothing",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("ledger_rows") as batch:
        batch.drop_column("gone_at")
    with op.batch_alter_table("findings") as batch:
        batch.drop_index("ix_findings_finding_id")
        batch.drop_column("finding_id")
