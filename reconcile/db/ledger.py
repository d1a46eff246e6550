"""Queries on the Moesif ledger snapshot: upsert rows into ``ledger_rows``; read them as a frame."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import asdict
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from reconcile.db.frames import (
    among,
    carrying,
    fewer,
    money_typed,
    outside_fewer,
    raw,
    read,
    read_soon,
    sorted_by,
    within,
)
from reconcile.db.models import LedgerEntry, UnreadableLedgerRow
from reconcile.db.sql import chunks, upsert
from reconcile.domain.values import BALANCE_COLUMNS, LEDGER_COLUMNS, LedgerRow, Unreadable
from reconcile.rules.absence import DroppedRow, Suspect

BATCH_SIZE = 500
"""Rows per upsert statement (21 parameters each stays under every backend's limit)."""

_MUTABLE = tuple(LEDGER_COLUMNS[1:])
# A later read that lacks these keeps what an earlier read saw (Moesif may omit them).
_KEPT_WHEN_MISSING = frozenset({"transaction_id", "description"})


def store_ledger_rows(session: Session, rows: list[LedgerRow], now: datetime) -> tuple[int, int]:
    """Upsert one batch of rows by ``moesif_id``; return how many were new and how many changed.

    A new row gets ``first_seen_at = now``; a row seen again gets ``last_seen_at = now`` and its
    current content (a ``transaction_id`` or ``description`` Moesif omits this time is kept).
    Flushes, never commits.
    """
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
    statement = upsert(session, LedgerEntry, values)
    updates: dict[str, Any] = {
        name: (
            func.coalesce(statement.excluded[name], LedgerEntry.__table__.c[name])
            if name in _KEPT_WHEN_MISSING
            else statement.excluded[name]
        )
        for name in _MUTABLE
    }
    for name in BALANCE_COLUMNS:  # a read without the balance keeps the one seen before
        updates[name] = func.coalesce(statement.excluded[name], LedgerEntry.__table__.c[name])
    updates["last_seen_at"] = statement.excluded.last_seen_at
    updates["gone_at"] = None  # returned again: it is back
    session.execute(statement.on_conflict_do_update(index_elements=["moesif_id"], set_=updates))
    session.flush()
    return len(unique) - len(existing), changed


def unreturned(
    session: Session,
    since: datetime,
    until: datetime,
    companies: Collection[str],
    seen: Collection[str],
) -> list[Suspect]:
    """Return the rows of ``[since, until)`` not gone yet that a complete read did not return.

    Only rows of ``companies`` when some are named (the read was limited to them).
    """
    query = select(
        LedgerEntry.moesif_id,
        LedgerEntry.company_id,
        LedgerEntry.subscription_id,
        LedgerEntry.created_at,
    ).where(
        LedgerEntry.created_at >= since,
        LedgerEntry.created_at < until,
        LedgerEntry.gone_at.is_(None),
    )
    if companies:
        query = query.where(LedgerEntry.company_id.in_(list(companies)))
    returned = set(seen)
    return [
        Suspect(str(moesif_id), company_id, subscription_id, created_at)
        for moesif_id, company_id, subscription_id, created_at in session.execute(query)
        if moesif_id not in returned
    ]


def mark_gone(session: Session, moesif_ids: Collection[str], now: datetime) -> list[str]:
    """Mark these rows gone (``rules.absence.concluded_gone`` decided); return their ids.

    A gone row is kept with its ``last_seen_at``, gets ``gone_at = now`` and no longer matches
    anything. Flushes, never commits.
    """
    gone = sorted(set(moesif_ids))
    for chunk in chunks(gone):
        session.execute(
            update(LedgerEntry).where(LedgerEntry.moesif_id.in_(chunk)).values(gone_at=now)
        )
    session.flush()
    return gone


def gone_rows_naming(session: Session, transaction_ids: Collection[str]) -> dict[str, DroppedRow]:
    """Return, per transaction id, the latest gone row that carried it (none when no row did)."""
    found: dict[str, DroppedRow] = {}
    gone = (
        select(LedgerEntry.transaction_id, LedgerEntry.moesif_id, LedgerEntry.last_seen_at)
        .where(LedgerEntry.gone_at.is_not(None))
        .order_by(LedgerEntry.last_seen_at, LedgerEntry.moesif_id)
    )
    wanted = set(transaction_ids)
    if fewer(session, gone, len(wanted)):  # gone rows are rare: read them, keep those asked
        parts = [gone]
    else:
        named = LedgerEntry.transaction_id
        parts = [gone.where(named.in_(chunk)) for chunk in chunks(wanted)]
    for part in parts:
        for transaction_id, moesif_id, last_seen_at in session.execute(part):
            if transaction_id in wanted:
                found[str(transaction_id)] = DroppedRow(str(moesif_id), last_seen_at)
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
    statement = upsert(session, UnreadableLedgerRow, [values])
    updates = {
        name: statement.excluded[name]
        for name in ("transaction_id", "company_id", "created_at", "reason", "raw_json")
    }
    updates["last_seen_at"] = statement.excluded.last_seen_at
    session.execute(statement.on_conflict_do_update(index_elements=["moesif_id"], set_=updates))
    session.flush()


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
    return ledger_reading(session, since, until)(transaction_ids)


def ledger_reading(
    session: Session, since: datetime, until: datetime
) -> Callable[[Collection[str]], pd.DataFrame]:
    """Start reading the snapshot rows created in ``[since, until)``; return what ends the read.

    Call it with the transaction ids whose rows outside the window are wanted too: it returns
    :func:`ledger_frame`'s frame. Where the read is columnar it goes on in the background
    meanwhile (:func:`reconcile.db.frames.read_soon`), so the caller may read the other side.
    """
    created = LedgerEntry.created_at
    in_window = within(session, created, since, until)
    window = read_soon(  # sorted as it is read: the rows outside the window are few
        session,
        _ledger_select().where(in_window),
        LEDGER_COLUMNS,
        times=["created_at"],
        order=_ORDER,
    )

    def frame(transaction_ids: Collection[str] = ()) -> pd.DataFrame:
        rows = window()
        if len(transaction_ids):
            # every row naming one of the ids outside the window, even when the id is also inside
            more = _named_outside(session, since, until, transaction_ids)
            if not more.empty:
                rows = pd.concat([rows, more], ignore_index=True)
        return sorted_by(_typed(rows), _ORDER)

    return frame


_ORDER = ["created_at", "moesif_id"]
"""The ledger frame's order."""


def _named_outside(
    session: Session, since: datetime, until: datetime, transaction_ids: Collection[str]
) -> pd.DataFrame:
    """Return the rows outside ``[since, until)`` that carry one of ``transaction_ids``.

    When fewer rows lie outside the window than there are ids, those rows are read and kept by
    id here; else each id is looked up through the ``transaction_id`` index.
    """
    created = LedgerEntry.created_at
    outside = or_(created < since, created >= until)
    if outside_fewer(session, created, since, until, len(transaction_ids)):
        rows = read(session, _ledger_select().where(outside), LEDGER_COLUMNS, times=["created_at"])
        return rows[carrying(rows["transaction_id"], transaction_ids)]
    inside = (created >= since) & (created < until)
    query = _ledger_select().where(among(session, LedgerEntry.transaction_id, transaction_ids))
    query = query.where(~inside)
    return read(session, query, LEDGER_COLUMNS, times=["created_at"])


def _existing(session: Session, rows: dict[str, LedgerRow]) -> dict[str, tuple[Any, ...]]:
    columns = [getattr(LedgerEntry, name) for name in _MUTABLE]
    query = select(LedgerEntry.moesif_id, *columns).where(LedgerEntry.moesif_id.in_(list(rows)))
    return {found[0]: tuple(found[1:]) for found in session.execute(query)}


def _values(row: LedgerRow) -> dict[str, Any]:
    values = asdict(row)
    values["entry_type"] = row.entry_type.value
    changes = row.balance_changes
    values["balance_changes"] = None if changes is None else ",".join(map(str, changes))
    return values


def _content(row: LedgerRow, before: tuple[Any, ...]) -> tuple[Any, ...]:
    """Return what the stored row will hold after the upsert, to compare with ``before``."""
    values = _values(row)
    return tuple(
        old if name in _KEPT_WHEN_MISSING and values[name] is None else values[name]
        for name, old in zip(_MUTABLE, before, strict=True)
    )


def ledger_by_ids(session: Session, moesif_ids: Collection[str]) -> pd.DataFrame:
    """Return the snapshot rows with these ``moesif_id``s, whenever created (gone ones left out).

    Columns as :func:`ledger_frame`.
    """
    if not moesif_ids:
        return _typed(pd.DataFrame(columns=LEDGER_COLUMNS))
    named = _ledger_select().where(among(session, LedgerEntry.moesif_id, moesif_ids))
    return _typed(read(session, named, LEDGER_COLUMNS, times=["created_at"]))


def _ledger_select() -> Select[Any]:
    """Select the matcher's columns of rows Moesif still returns (gone rows match nothing)."""
    return select(
        *(
            raw(LedgerEntry.created_at) if name == "created_at" else getattr(LedgerEntry, name)
            for name in LEDGER_COLUMNS
        )
    ).where(LedgerEntry.gone_at.is_(None))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    return money_typed(frame, LEDGER_COLUMNS)


def rows_carrying(
    session: Session, transaction_id: str
) -> list[tuple[str, str | None, str | None, int]]:
    """Return the snapshot's rows that carry ``transaction_id`` and Moesif still returns.

    Each as ``(moesif_id, company_id, subscription_id, amount_minor)``, oldest first.
    """
    query = (
        select(
            LedgerEntry.moesif_id,
            LedgerEntry.company_id,
            LedgerEntry.subscription_id,
            LedgerEntry.amount_minor,
        )
        .where(LedgerEntry.transaction_id == transaction_id, LedgerEntry.gone_at.is_(None))
        .order_by(LedgerEntry.created_at, LedgerEntry.moesif_id)
    )
    return [(row[0], row[1], row[2], int(row[3])) for row in session.execute(query)]


def rows_naming(
    session: Session, moesif_id: str | None, transaction_id: str | None
) -> list[LedgerEntry]:
    """Return the ledger rows with this Moesif id or carrying this transaction id, gone included."""
    conditions = []
    if moesif_id:
        conditions.append(LedgerEntry.moesif_id == moesif_id)
    if transaction_id:
        conditions.append(LedgerEntry.transaction_id == transaction_id)
    if not conditions:
        return []
    return list(
        session.scalars(select(LedgerEntry).where(or_(*conditions)).order_by(LedgerEntry.id))
    )
