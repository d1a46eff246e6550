"""The Moesif ledger snapshot: sync billing reports into ``ledger_rows``; read them as a frame."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

import pandas as pd
from sqlalchemy import Select, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reconcile.db.models import LedgerEntry, UnreadableLedgerRow
from reconcile.domain import LEDGER_COLUMNS, LedgerRow, Unreadable
from reconcile.moesif.client import MoesifClient
from reconcile.moesif.rows import normalise, raw_json_text, unreadable_row

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
"""Rows per upsert statement (13 parameters each stays under every backend's limit)."""

IN_CHUNK = 500
"""Transaction ids per ``IN (...)`` list when reading rows back by id."""

_MUTABLE = tuple(LEDGER_COLUMNS[1:])
# A later read that lacks these keeps what an earlier read saw (Moesif may omit them).
_KEPT_WHEN_MISSING = frozenset({"transaction_id", "description"})
_TEXT_COLUMNS = [name for name in LEDGER_COLUMNS if name not in ("amount_minor", "created_at")]


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

    Rows are upserted by ``moesif_id``: a new row gets ``first_seen_at = now``; a row seen
    again gets ``last_seen_at = now`` and its current content (a ``transaction_id`` or
    ``description`` Moesif omits this time is kept). A row that cannot be interpreted safely
    (no time, an amount that does not parse or is out of range, text the database cannot hold)
    is stored as received in ``unreadable_ledger_rows`` (escaped JSON), counted in
    ``rows_skipped`` and returned in ``unreadable``; it never stops the sync. Flushes, never
    commits.

    Args:
        session: the caller's session; the caller owns the transaction.
        client: the Moesif client; its subscription lookups supply missing currencies.
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
    counts = {"seen": 0, "new": 0, "updated": 0, "skipped": 0}
    batch: list[LedgerRow] = []
    unreadable: set[str] = set()
    poison: dict[str, Unreadable] = {}

    def flush() -> None:
        new, updated = _upsert(session, batch, now)
        counts["new"] += new
        counts["updated"] += updated
        batch.clear()
        if progress is not None:
            progress(counts["seen"])

    for raw in _raw_rows(client, since, until, companies):
        counts["seen"] += 1
        ledger_row = _normalised(raw, currency_for or _asking(client), amount_unit)
        if isinstance(ledger_row, Unreadable):
            counts["skipped"] += 1
            if ledger_row.transaction_id:
                unreadable.add(ledger_row.transaction_id)
            poison[ledger_row.object_id] = ledger_row
            store_unreadable(session, ledger_row, raw_json_text(raw), now)
            continue
        batch.append(ledger_row)
        if len(batch) >= BATCH_SIZE:
            flush()
    flush()
    result = SyncResult(
        counts["seen"],
        counts["new"],
        counts["updated"],
        counts["skipped"],
        frozenset(unreadable),
        tuple(poison.values()),
    )
    logger.info(
        "Moesif ledger sync: rows_seen=%d, rows_new=%d, rows_updated=%d, rows_skipped=%d",
        result.rows_seen,
        result.rows_new,
        result.rows_updated,
        result.rows_skipped,
    )
    return result


def ledger_frame(
    session: Session,
    since: datetime,
    until: datetime,
    transaction_ids: Collection[str] = (),
) -> pd.DataFrame:
    """Return the snapshot rows created in ``[since, until)`` plus any with one of the given ids.

    Columns are :data:`reconcile.domain.LEDGER_COLUMNS`: ``created_at`` as
    ``datetime64[us, UTC]``, ``amount_minor`` as ``int64``, the rest as pandas strings (missing
    values are ``NaN``). Sorted by ``created_at`` then ``moesif_id``; each row appears once.
    """
    in_window = (LedgerEntry.created_at >= since) & (LedgerEntry.created_at < until)
    statements = [_ledger_select().where(in_window)]
    statements += [
        _ledger_select().where(LedgerEntry.transaction_id.in_(chunk))
        for chunk in _chunks(sorted(set(transaction_ids)), IN_CHUNK)
    ]
    connection = session.connection()
    frames = [pd.read_sql(statement, connection) for statement in statements]
    filled = [frame for frame in frames if not frame.empty]
    frame = pd.concat(filled, ignore_index=True) if filled else frames[0]
    frame = frame.drop_duplicates(subset="moesif_id")
    return _typed(frame).sort_values(["created_at", "moesif_id"]).reset_index(drop=True)


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
) -> LedgerRow | Unreadable:
    try:
        return normalise(raw, amount_unit=amount_unit, currency_for=currency_for)
    except (ValueError, ArithmeticError) as error:
        found = unreadable_row(raw, str(error))
        logger.warning("Moesif row %s is unreadable: %s", found.object_id, found.reason)
        return found


def store_unreadable(session: Session, row: Unreadable, raw_json: str, now: datetime) -> None:
    """Keep an unreadable Moesif row as received: insert it, or mark it seen again. Flushes."""
    values = {
        "moesif_id": row.object_id,
        "transaction_id": row.transaction_id,
        "company_id": row.company_hint,
        "created_at": row.created_at,
        "reason": row.reason,
        "raw_json": raw_json,
        "first_seen_at": now,
        "last_seen_at": now,
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(UnreadableLedgerRow).values(values)
    updates = {
        name: statement.excluded[name]
        for name in ("transaction_id", "company_id", "created_at", "reason", "raw_json")
    }
    updates["last_seen_at"] = statement.excluded.last_seen_at
    session.execute(statement.on_conflict_do_update(index_elements=["moesif_id"], set_=updates))
    session.flush()


def _upsert(session: Session, rows: list[LedgerRow], now: datetime) -> tuple[int, int]:
    """Insert or update one batch; return how many rows were new and how many changed."""
    unique = {row.moesif_id: row for row in rows}
    if not unique:
        return 0, 0
    existing = _existing(session, unique)
    changed = sum(
        1 for moesif_id, before in existing.items() if before != _content(unique[moesif_id], before)
    )
    values = [
        {**_values(row), "first_seen_at": now, "last_seen_at": now} for row in unique.values()
    ]
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(LedgerEntry).values(values)
    updates: dict[str, Any] = {
        name: (
            func.coalesce(statement.excluded[name], LedgerEntry.__table__.c[name])
            if name in _KEPT_WHEN_MISSING
            else statement.excluded[name]
        )
        for name in _MUTABLE
    }
    updates["last_seen_at"] = statement.excluded.last_seen_at
    session.execute(statement.on_conflict_do_update(index_elements=["moesif_id"], set_=updates))
    session.flush()
    return len(unique) - len(existing), changed


def _existing(session: Session, rows: dict[str, LedgerRow]) -> dict[str, tuple[Any, ...]]:
    columns = [getattr(LedgerEntry, name) for name in _MUTABLE]
    query = select(LedgerEntry.moesif_id, *columns).where(LedgerEntry.moesif_id.in_(list(rows)))
    return {found[0]: tuple(found[1:]) for found in session.execute(query)}


def _values(row: LedgerRow) -> dict[str, Any]:
    values = asdict(row)
    values["entry_type"] = row.entry_type.value
    return values


def _content(row: LedgerRow, before: tuple[Any, ...]) -> tuple[Any, ...]:
    """Return what the stored row will hold after the upsert, to compare with ``before``."""
    values = _values(row)
    return tuple(
        old if name in _KEPT_WHEN_MISSING and values[name] is None else values[name]
        for name, old in zip(_MUTABLE, before, strict=True)
    )


def _ledger_select() -> Select[Any]:
    return select(*(getattr(LedgerEntry, name) for name in LEDGER_COLUMNS))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    typed = frame.reindex(columns=LEDGER_COLUMNS)
    typed["created_at"] = pd.to_datetime(typed["created_at"], utc=True).astype(
        "datetime64[us, UTC]"
    )
    typed["amount_minor"] = typed["amount_minor"].astype("int64")
    for name in _TEXT_COLUMNS:
        typed[name] = typed[name].astype("str")
    return typed


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
