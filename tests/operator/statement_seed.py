"""A company with a statement to show: a recorded top-up, a lost one, a hostile promotion."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from reconcile.db.models import ExpectedRow, LedgerEntry, MoesifSubscription
from tests.operator.conftest import HOSTILE, NOW, add_state


def _movement(transaction_id: str, amount: int, days: int) -> ExpectedRow:
    return ExpectedRow(
        transaction_id=transaction_id,
        source="topup",
        entry_type="credit",
        amount_minor=amount,
        currency="usd",
        created_at=NOW - timedelta(days=days),
        stripe_object_id=transaction_id,
        topup_id=transaction_id,
        stripe_customer_id="cus_stmt",
        company_id="stmtco",
        subscription_id="sub_stmt",
        first_seen_run_id="r",
        last_seen_run_id="r",
        updated_at=NOW,
    )


def _row(moesif_id: str, entry_type: str, amount: int, days: int, **more: str) -> LedgerEntry:
    return LedgerEntry(
        moesif_id=moesif_id,
        entry_type=entry_type,
        amount_minor=amount,
        amount_raw=str(amount),
        currency="usd",
        company_id="stmtco",
        subscription_id="sub_stmt",
        created_at=NOW - timedelta(days=days),
        first_seen_at=NOW,
        last_seen_at=NOW,
        **more,
    )


def seed_statement(sessions: sessionmaker[Session]) -> str:
    """Store the company ``stmtco``; return the finding id of its lost top-up ``pi_lost``."""
    with sessions.begin() as session:
        session.add(
            MoesifSubscription(
                subscription_id="sub_stmt", currency="usd", company_id="stmtco", fetched_at=NOW
            )
        )
        session.add(_row("m_before", "credit", 1_000, 40))
        session.add(_movement("pi_paid", 5_000, 3))
        session.add(_row("m_paid", "credit", 5_000, 3, transaction_id="pi_paid"))
        session.add(_row("m_promo", "promotion", 500, 2, description=HOSTILE))
        session.add(_row("m_use", "usage", 250, 2))
        session.add(_movement("pi_lost", 2_000, 1))
        return add_state(
            session,
            category="missing_in_moesif",
            transaction_id="pi_lost",
            moesif_id=None,
            company_id="stmtco",
            subscription_id="sub_stmt",
            delta_minor=2_000,
        ).finding_id


EXPECTED_ROWS = [
    ("opening", "", "10.00"),
    ("top_up", "50.00", "60.00"),
    ("promotion", "5.00", "65.00"),
    ("usage", "-2.50", "62.50"),
    ("top_up", "20.00", "82.50"),
    ("closing", "", "62.50"),
]
"""(kind, amount, balance_after) of ``stmtco``'s statement over the last 30 days."""
