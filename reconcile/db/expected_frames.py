"""The expected entries Stripe contributes, read as the matcher's frame (columnar)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, Select, or_, select
from sqlalchemy.orm import Session

from reconcile.db.frames import among, money_typed, raw, read, sorted_by, within
from reconcile.db.models import ExpectedRow
from reconcile.domain.values import EXPECTED_COLUMNS


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
    return money_typed(frame, EXPECTED_COLUMNS)
