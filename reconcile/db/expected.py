"""Queries on the expected entries Stripe contributes: upsert them, read a window as a frame."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from datetime import datetime
from itertools import islice
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, Select, Table, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reconcile.db.frames import among, raw, read, sorted_by, within
from reconcile.db.models import ExpectedRow
from reconcile.domain.values import EXPECTED_COLUMNS, ExpectedEntry

BATCH_SIZE = 5_000
"""Entries per ``executemany`` of the one cached upsert statement."""

_MUTABLE = (*EXPECTED_COLUMNS[1:], "last_seen_run_id", "updated_at", "stripe_account")
_TEXT_COLUMNS = [name for name in EXPECTED_COLUMNS if name not in ("amount_minor", "created_at")]


def store_expected(
    session: Session,
    entries: Iterable[ExpectedEntry],
    *,
    run_id: str,
    now: datetime,
    stripe_account: str | None = None,
) -> int:
    """Upsert ``entries`` by transaction id and return how many were given; does not commit.

    A new row records ``run_id`` as first and last seen; an existing row keeps its first run and
    takes the new values, ``run_id`` as last seen and ``now`` as ``updated_at``.
    ``stripe_account`` is the connected account they were read from (``None``: the key's own).
    """
    statement = _insert(session)
    statement = statement.on_conflict_do_update(
        index_elements=[ExpectedRow.__table__.c.transaction_id],
        set_={name: statement.excluded[name] for name in _MUTABLE},
    )
    stored = 0
    for batch in _batches(entries, BATCH_SIZE):
        rows = list(
            {
                row["transaction_id"]: row | {"stripe_account": stripe_account}
                for row in (_row(e, run_id, now) for e in batch)
            }.values()
        )
        session.execute(statement, rows)
        stored += len(batch)
    return stored


def _insert(session: Session) -> postgresql.Insert | sqlite.Insert:
    """Return the backend's bare ``INSERT`` for ``executemany``: compiled once, cached.

    It names the table, not the mapped class, so a batch is one Core ``executemany``: the ORM's
    bulk path would look at every row again (most of the cost of storing an entry).
    """
    table = ExpectedRow.__table__
    assert isinstance(table, Table)
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def expected_frame(
    session: Session,
    since: datetime,
    until: datetime,
    companies: Collection[str] = (),
    stripe_account: str | None = None,
) -> pd.DataFrame:
    """Return the stored expected entries created in ``[since, until)`` as the matcher's frame.

    Columns are :data:`reconcile.domain.EXPECTED_COLUMNS`; ``created_at`` is aware UTC and
    ``amount_minor`` is int64. ``companies``, when given, keeps only those companies' entries;
    with ``stripe_account`` too, the account's own entries are kept whatever their company
    (an unmapped customer's have none).
    """
    query = _expected_select().where(within(session, ExpectedRow.created_at, since, until))
    if companies:
        named: ColumnElement[bool] = ExpectedRow.company_id.in_(list(companies))
        if stripe_account is not None:
            named = or_(named, ExpectedRow.stripe_account == stripe_account)
        query = query.where(named)
    return _sorted(read(session, query, EXPECTED_COLUMNS, times=["created_at"]))


def expected_by_ids(session: Session, transaction_ids: Collection[str]) -> pd.DataFrame:
    """Return the stored expected entries with these transaction ids, whenever created."""
    if not transaction_ids:
        return _typed(pd.DataFrame(columns=EXPECTED_COLUMNS))
    query = _expected_select().where(among(session, ExpectedRow.transaction_id, transaction_ids))
    return _sorted(read(session, query, EXPECTED_COLUMNS, times=["created_at"]))


def _expected_select() -> Select[Any]:
    columns = [
        raw(ExpectedRow.created_at) if name == "created_at" else getattr(ExpectedRow, name)
        for name in EXPECTED_COLUMNS
    ]
    return select(*columns)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the read entries typed and in time order, then by transaction id.

    Sorted by Arrow, not by ``ORDER BY``: on SQLite that would walk the ``created_at`` index
    (the table's pages visited out of order, a row at a time: five times the read of a window
    of most of the table), and the ids order by their bytes on either database.
    """
    return sorted_by(_typed(frame), ["created_at", "transaction_id"])


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reindex(columns=EXPECTED_COLUMNS)
    frame["created_at"] = frame["created_at"].astype("datetime64[us, UTC]")
    frame["amount_minor"] = frame["amount_minor"].astype("int64")
    for name in _TEXT_COLUMNS:
        frame[name] = frame[name].astype("str")
    return frame


def _row(entry: ExpectedEntry, run_id: str, now: datetime) -> dict[str, Any]:
    return {
        "transaction_id": entry.transaction_id,
        "source": str(entry.source),
        "entry_type": str(entry.entry_type),
        "amount_minor": entry.amount_minor,
        "currency": entry.currency.lower(),
        "created_at": entry.created_at,
        "stripe_object_id": entry.stripe_object_id,
        "topup_id": entry.topup_id,
        "stripe_customer_id": entry.stripe_customer_id,
        "company_id": entry.company_id,
        "subscription_id": entry.subscription_id,
        "unmapped_reason": entry.unmapped_reason,
        "first_seen_run_id": run_id,
        "last_seen_run_id": run_id,
        "updated_at": now,
    }


def _batches(entries: Iterable[ExpectedEntry], size: int) -> Iterator[list[ExpectedEntry]]:
    iterator = iter(entries)
    while batch := list(islice(iterator, size)):
        yield batch


def movement_of(session: Session, transaction_id: str) -> ExpectedRow | None:
    """Return the snapshot's Stripe movement with this transaction id, if it holds one."""
    return session.scalars(
        select(ExpectedRow).where(ExpectedRow.transaction_id == transaction_id)
    ).first()


def account_companies(session: Session, stripe_account: str) -> list[str]:
    """Return the Moesif companies the account's movements map to, as far as the snapshot knows."""
    query = (
        select(ExpectedRow.company_id)
        .where(ExpectedRow.stripe_account == stripe_account, ExpectedRow.company_id.is_not(None))
        .distinct()
        .order_by(ExpectedRow.company_id)
    )
    return [company for company in session.scalars(query) if company is not None]
