"""Queries on where the findings' subjects lie: each movement's and row's company and time."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from reconcile.db.models import ExpectedRow, LedgerEntry, UnreadableLedgerRow
from reconcile.db.sql import chunks


def subject_places(
    session: Session, transaction_ids: Collection[str], moesif_ids: Collection[str]
) -> list[tuple[str | None, datetime]]:
    """Return (company id, time) of each snapshot record the given subjects name.

    For a transaction id: its Stripe movement (the company it maps to) and every ledger row
    carrying the id, wherever it sits (a misapplied row, a duplicate), gone ones included. For a
    Moesif id: its ledger row, or the unreadable row kept as received when it has a time.
    """
    places: list[tuple[str | None, datetime]] = []
    for chunk in chunks(transaction_ids):
        places += session.execute(
            select(ExpectedRow.company_id, ExpectedRow.created_at).where(
                ExpectedRow.transaction_id.in_(chunk)
            )
        ).all()
        places += session.execute(
            select(LedgerEntry.company_id, LedgerEntry.created_at).where(
                LedgerEntry.transaction_id.in_(chunk)
            )
        ).all()
    for chunk in chunks(moesif_ids):
        places += session.execute(
            select(LedgerEntry.company_id, LedgerEntry.created_at).where(
                LedgerEntry.moesif_id.in_(chunk)
            )
        ).all()
        for company, created_at in session.execute(
            select(UnreadableLedgerRow.company_id, UnreadableLedgerRow.created_at).where(
                UnreadableLedgerRow.moesif_id.in_(chunk)
            )
        ).all():
            if created_at is not None:
                places.append((company, created_at))
    return places
