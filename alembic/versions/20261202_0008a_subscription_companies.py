"""the company each kept Moesif subscription is filed under

Revision ID: 0008a
Revises: 0007
Create Date: 2026-12-02 08:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008a"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("moesif_subscriptions") as batch:
        batch.add_column(
            sa.Column(
                "company_id",
                sa.Text(),
                nullable=True,
                comment="null: not read since this was kept, so it is read again",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("moesif_subscriptions") as batch:
        batch.drop_column("company_id")
