"""postings record their origin and no longer need a run

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 03:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORIGIN_COMMENT = "who asked for it: run:<run id>, webhook:<event id>, top-up:<key>"


def upgrade() -> None:
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("origin", sa.Text(), nullable=True, comment=ORIGIN_COMMENT))
        batch_op.alter_column("run_id", existing_type=sa.String(length=40), nullable=True)
    op.execute("UPDATE postings SET origin = 'run:' || run_id")
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.alter_column(
            "origin", existing_type=sa.Text(), nullable=False, existing_comment=ORIGIN_COMMENT
        )


def downgrade() -> None:
    orphans = op.get_bind().scalar(sa.text("SELECT count(*) FROM postings WHERE run_id IS NULL"))
    if orphans:
        raise RuntimeError(
            f"{orphans} posting(s) were made without a run (webhook or top-up); the older schema "
            "cannot hold them, and deleting them would lose the record that prevents a resend"
        )
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.alter_column("run_id", existing_type=sa.String(length=40), nullable=False)
        batch_op.drop_column("origin")
