"""Syncing Moesif's billing reports into the snapshot: Moesif yields rows, ``db`` stores them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from reconcile.db.ledger import BATCH_SIZE, store_ledger_rows
from reconcile.domain import LedgerRow
from reconcile.moesif.client import MoesifClient
from reconcile.moesif.rows import normalise, row_id

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

    A row that cannot be normalised (no time, no amount) is skipped with a warning and counted
    in ``rows_skipped``; the transaction id it names, if any, is returned as unreadable.
    Flushes, never commits.

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
    """
    counts = {"seen": 0, "new": 0, "updated": 0}
    unreadable: set[str] = set()
    skipped = 0
    batch: list[LedgerRow] = []

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
        if row is None:
            skipped += 1
            if raw.get("transaction_id"):
                unreadable.add(str(raw["transaction_id"]))
            continue
        batch.append(row)
        if len(batch) >= BATCH_SIZE:
            flush()
    flush()
    result = SyncResult(
        counts["seen"], counts["new"], counts["updated"], skipped, frozenset(unreadable)
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


def _asking(client: MoesifClient) -> Callable[[str], str | None]:
    def currency_for(subscription_id: str) -> str | None:
        subscription = client.subscription(subscription_id)
        return subscription.currency if subscription is not None else None

    return currency_for


def _normalised(
    raw: dict[str, Any],
    currency_for: Callable[[str], str | None],
    amount_unit: Literal["major", "minor"],
) -> LedgerRow | None:
    try:
        return normalise(raw, amount_unit=amount_unit, currency_for=currency_for)
    except ValueError as error:
        logger.warning("skipping Moesif row %s: %s", row_id(raw), error)
        return None
