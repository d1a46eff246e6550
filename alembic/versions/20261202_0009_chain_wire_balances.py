"""running balances of ledger rows and subscriptions

Revision ID: 0009_chain_wire
Revises: 0009_notice_wire
Create Date: 2026-12-02 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_chain_wire"
down_revision: str | None = "0009_notice_wire"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BALANCE_FIGURES = (
    "beginning_current_minor",
    "beginning_pending_minor",
    "beginning_available_minor",
    "ending_current_minor",
    "ending_pending_minor",
    "ending_available_minor",
)


def upgrade() -> None:
    with op.batch_alter_table("ledger_rows", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "sequence_id",
                sa.BigInteger(),
                nullable=True,
                comment="the ending balance's sequence_id; null: the row carries no balance",
            )
        )
        for name in _BALANCE_FIGURES:
            batch_op.add_column(sa.Column(name, sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "balance_changes",
                sa.Text(),
                nullable=True,
                comment="the balance_changes amounts in minor units, comma-separated",
            )
        )
    with op.batch_alter_table("moesif_subscriptions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "current_balance",
                sa.Text(),
                nullable=True,
                comment="the current_balance Moesif reported at fetched_at, exactly as sent",
            )
        )
        batch_op.add_column(
            sa.Column(
                "balance_sequence_id",
                sa.BigInteger(),
                nullable=True,
                comment="the sequence_id of that balance; null: Moesif named none",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("moesif_subscriptions", schema=None) as batch_op:
        batch_op.drop_column("balance_sequence_id")
        batch_op.drop_column("current_balance")
    with op.batch_alter_table("ledger_rows", schema=None) as batch_op:
        batch_op.drop_column("balance_changes")
        for name in reversed(_BALANCE_FIGURES):
            batch_op.drop_column(name)
        batch_op.drop_column("sequence_id")
