"""Which ledger rows a read-back counts for a posting: its own id, or anonymous rows like it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from reconcile.domain.values import Entry, LedgerRow
from reconcile.domain.vocab import EntryType
from reconcile.posting.next_step import ReadBack

MARGIN = timedelta(hours=1)
"""How far before an intent a read-back looks for the row it may have created."""


def read_back_of(rows: Iterable[LedgerRow], entry: Entry, recorded_at: datetime) -> ReadBack:
    """Summarise the ledger rows read back for ``entry``, recorded at ``recorded_at``.

    ``confirmed_twins`` is left at zero; only the postings table knows it.
    """
    anonymous: list[str] = []
    for row in rows:
        if row.transaction_id == entry.transaction_id:
            return ReadBack(found_by_id=True)
        if row.transaction_id is None and same_movement(row, entry, recorded_at):
            anonymous.append(row.description or "")
    return ReadBack(found_by_id=False, anonymous=tuple(anonymous))


def same_movement(row: LedgerRow, entry: Entry, recorded_at: datetime) -> bool:
    """A row that could be this entry's: same place, type and amount, not older than its intent."""
    return (
        row.company_id == entry.company_id
        and row.subscription_id == entry.subscription_id
        and row.entry_type == EntryType(entry.entry_type)
        and row.amount_minor == entry.amount_minor
        and row.created_at >= recorded_at - MARGIN
    )
