"""many Stripe accounts: the account of a run and of a movement, and Moesif's shared budget

Revision ID: 0010_connect
Revises: 0009_chain_wire
Create Date: 2026-12-02 17:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import reconcile.db.models

revision: str = "0010_connect"
down_revision: str | None = "0009_chain_wire"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUN_COMMENT = "the connected account read (acct_…); null: the key's own"
ENTRY_COMMENT = "the connected account it was read from; null: the key's"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("stripe_account", sa.String(length=255), nullable=True, comment=RUN_COMMENT)
        )
        batch.create_index(batch.f("ix_runs_stripe_account"), ["stripe_account"], unique=False)
    with op.batch_alter_table("expected_entries") as batch:
        batch.add_column(
            sa.Column("stripe_account", sa.String(length=255), nullable=True, comment=ENTRY_COMMENT)
        )
        batch.create_index(
            batch.f("ix_expected_entries_stripe_account"), ["stripe_account"], unique=False
        )
    op.create_table(
        "moesif_budget",
        sa.Column("minute", reconcile.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("minute", name=op.f("pk_moesif_budget")),
    )


def downgrade() -> None:
    op.drop_table("moesif_budget")
    with op.batch_alter_table("expected_entries") as batch:
        batch.drop_index(batch.f("ix_expected_entries_stripe_account"))
        batch.drop_column("stripe_account")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index(batch.f("ix_runs_stripe_account"))
        batch.drop_column("stripe_account")
