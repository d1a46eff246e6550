"""Syncing Moesif's billing reports into the snapshot: Moesif yields rows, ``db`` stores them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from reconcile.db.ledger import (
    BATCH_SIZE,
    mark_gone,
    store_ledger_rows,
    store_unreadable,
    unreturned,
)
from reconcile.domain.values import LedgerRow, Unreadable
from reconcile.moesif.client import MoesifClient
from reconcile.moesif.rows import normalise, raw_json_text, unreadable_row
from reconcile.rules.absence import Suspect, concluded_gone, targeted_reads

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncResult:
    """What one sync did: rows read, new rows, rows whose content changed, rows unreadable."""

    rows_seen: int
    rows_new: int
    rows_updated: int
    rows_skipped: int = 0
    unreadable_ids: frozenset[str] = frozenset()
    """Transaction ids named by skipped rows: Moesif may hold these, so they are never posted."""
    unreadable: tuple[Unreadable, ...] = ()
    """The skipped rows themselves, each stored as received and to be reported ``unreadable``."""
    gone: tuple[str, ...] = ()
    """Rows of the period seen before that neither this read nor a targeted read of each
    returned, now marked gone."""


def sync_ledger(
    session: Session,
    client: MoesifClient,
    since: datetime,
    until: datetime,
    *,
    amount_unit: Literal["major", "minor"],
    companies: Sequence[str] = (),
    now: datetime,
    progress: Callable[[int], None] | None = None,
    currency_for: Callable[[str], str | None] | None = None,
) -> SyncResult:
    """Snapshot Moesif's billing reports of ``[since, until)`` into ``ledger_rows``.

    A row that cannot be interpreted safely (no time, an amount that does not parse or is out of
    range, text the database cannot hold) is stored as received in ``unreadable_ledger_rows``
    (escaped JSON), counted in ``rows_skipped`` and returned in ``unreadable``; it never stops
    the sync. A stored row of ``[since, until)`` that this complete read no longer returns is
    read for again, on its company in a narrow window around its time
    (:mod:`reconcile.rules.absence`); only when that read lacks it too is it marked gone (kept,
    and it matches nothing from then on). Flushes, never commits.

    Args:
        session: the caller's session; the caller owns the transaction.
        client: the Moesif client to read reports from.
        since: the window start, inclusive.
        until: the window end, exclusive.
        amount_unit: how Moesif amounts are written (``MOESIF_AMOUNT_UNIT``).
        companies: read only these companies (``--company``); all when empty.
        now: the time to record as first and last seen.
        progress: called with the number of rows read so far after each batch.
        currency_for: a subscription's currency, for rows that name none; by default asked of
            ``client``.

    Raises:
        MoesifUnavailable: Moesif could not be read (from the client).
        MoesifReadCut: an answer stayed at the read cap in a one-second window; the caller
            rolls the session back, so nothing read is kept and nothing is marked gone.
    """
    counts = {"seen": 0, "new": 0, "updated": 0}
    unreadable: set[str] = set()
    poison: dict[str, Unreadable] = {}
    batch: list[LedgerRow] = []
    returned: set[str] = set()

    def flush() -> None:
        new, updated = store_ledger_rows(session, batch, now)
        counts["new"] += new
        counts["updated"] += updated
        batch.clear()
        if progress is not None:
            progress(counts["seen"])

    for raw in _raw_rows(client, since, until, companies):
        counts["seen"] += 1
        row = _normalised(raw, currency_for or _asking(client), amount_unit)
        returned.add(row.object_id if isinstance(row, Unreadable) else row.moesif_id)
        if isinstance(row, Unreadable):
            if row.transaction_id:
                unreadable.add(row.transaction_id)
            poison[row.object_id] = row
            store_unreadable(session, row, raw_json_text(raw), now)
            continue
        batch.append(row)
        if len(batch) >= BATCH_SIZE:
            flush()
    flush()
    suspects = unreturned(session, since, until, companies, returned)
    again = _read_again(client, suspects, currency_for or _asking(client), amount_unit)
    store_ledger_rows(session, [row for row in again if isinstance(row, LedgerRow)], now)
    found = {row.object_id if isinstance(row, Unreadable) else row.moesif_id for row in again}
    for suspect in suspects:
        if suspect.moesif_id in found:
            logger.info(
                "ledger row %s was missing from Moesif's read of its period but a targeted "
                "read returned it; not marked gone",
                suspect.moesif_id,
            )
    gone = mark_gone(session, concluded_gone(suspects, found), now)
    if gone:
        logger.warning(
            "%d ledger row(s) Moesif no longer returns, marked gone: %s", len(gone), ", ".join(gone)
        )
    result = SyncResult(
        counts["seen"],
        counts["new"],
        counts["updated"],
        len(poison),
        frozenset(unreadable),
        tuple(poison.values()),
        tuple(gone),
    )
    logger.info(
        "Moesif ledger sync: rows_seen=%d, rows_new=%d, rows_updated=%d, rows_skipped=%d",
        result.rows_seen,
        result.rows_new,
        result.rows_updated,
        result.rows_skipped,
    )
    return result


def _raw_rows(
    client: MoesifClient, since: datetime, until: datetime, companies: Sequence[str]
) -> Iterator[dict[str, Any]]:
    if not companies:
        yield from client.billing_reports(since, until)
        return
    for company_id in companies:
        yield from client.billing_reports(since, until, company_id=company_id)


def _read_again(
    client: MoesifClient,
    suspects: Sequence[Suspect],
    currency_for: Callable[[str], str | None],
    amount_unit: Literal["major", "minor"],
) -> list[LedgerRow | Unreadable]:
    """Read Moesif again around each suspect row (its company, a narrow window); every row."""
    rows: list[LedgerRow | Unreadable] = []
    for read in targeted_reads(suspects):
        for raw in client.billing_reports(read.since, read.until, company_id=read.company_id):
            rows.append(_normalised(raw, currency_for, amount_unit))
    return rows


def _asking(client: MoesifClient) -> Callable[[str], str | None]:
    def currency_for(subscription_id: str) -> str | None:
        subscription = client.subscription(subscription_id)
        return subscription.currency if subscription is not None else None

    return currency_for


def _normalised(
    raw: dict[str, Any],
    currency_for: Callable[[str], str | None],
    amount_unit: Literal["major", "minor"],
) -> LedgerRow | Unreadable:
    try:
        return normalise(raw, amount_unit=amount_unit, currency_for=currency_for)
    except (ValueError, ArithmeticError) as error:
        found = unreadable_row(raw, str(error))
        logger.warning("Moesif row %s is unreadable: %s", found.object_id, found.reason)
        return found
