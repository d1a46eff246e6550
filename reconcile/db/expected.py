"""Queries on the expected entries Stripe contributes: upsert them, look one up.

Reading a window of them as the matcher's frame is :mod:`reconcile.db.expected_frames`: this
module imports neither pandas nor the columnar readers, so a process that only stores Stripe's
read (the extraction) does not carry them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from itertools import islice, repeat
from typing import Any

from sqlalchemy import Dialect, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from reconcile.db.models import ExpectedRow
from reconcile.domain.values import EXPECTED_COLUMNS, ExpectedEntry

BATCH_SIZE = 5_000
"""Entries per ``executemany`` of the one cached upsert statement."""

_MUTABLE = (*EXPECTED_COLUMNS[1:], "last_seen_run_id", "updated_at", "stripe_account")


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
    connection = session.connection()
    upsert = _Upsert(connection.dialect)
    fixed = upsert.processed(
        {
            "first_seen_run_id": run_id,
            "last_seen_run_id": run_id,
            "updated_at": now,
            "stripe_account": stripe_account,
        }
    )
    stored = 0
    for batch in _batches(entries, BATCH_SIZE):
        # The last of a transaction id in a batch wins, as the upsert would make it.
        latest = {entry.transaction_id: entry for entry in batch}
        connection.exec_driver_sql(upsert.sql, upsert.rows(latest.values(), fixed))
        stored += len(batch)
    return stored


_COLUMNS = (
    *EXPECTED_COLUMNS,
    "first_seen_run_id",
    "last_seen_run_id",
    "updated_at",
    "stripe_account",
)
"""The columns an upsert writes."""


class _Upsert:
    """The ``INSERT … ON CONFLICT`` of expected rows for one dialect, compiled once.

    It runs with the driver's own ``executemany`` on parameters already in the driver's form
    (each column's bind processor applied here): Core's handling of every row's parameters was
    most of the cost of storing an entry. It names the table, not the mapped class, for the
    same reason (the ORM's bulk path looks at every row again).
    """

    def __init__(self, dialect: Dialect) -> None:
        """Compile the upsert for ``dialect`` and take its columns' bind processors."""
        table = ExpectedRow.__table__
        assert isinstance(table, Table)
        insert = postgresql.insert(table) if dialect.name == "postgresql" else sqlite.insert(table)
        statement = insert.on_conflict_do_update(
            index_elements=[table.c.transaction_id],
            set_={name: insert.excluded[name] for name in _MUTABLE},
        )
        compiled = statement.compile(dialect=dialect, column_keys=list(_COLUMNS))
        self.sql = compiled.string
        self._order = list(compiled.positiontup or ()) if compiled.positional else None
        self._processors = {
            name: processor
            for name in _COLUMNS
            if (processor := _bind_processor(table.c[name].type, dialect)) is not None
        }

    def rows(
        self, entries: Iterable[ExpectedEntry], fixed: dict[str, Any]
    ) -> list[tuple[Any, ...]] | list[dict[str, Any]]:
        """Return the driver's parameters for ``entries``, ``fixed``'s columns in every row.

        Built a column at a time: each bind processor is mapped over its column once.

        Args:
            entries: the entries, one row each.
            fixed: the columns every row has alike, already :meth:`processed`.
        """
        own = [_row(entry) for entry in entries]
        if not own:
            return []
        columns: dict[str, Iterable[Any]] = {
            name: repeat(value, len(own)) for name, value in fixed.items()
        }
        for name, values in zip(EXPECTED_COLUMNS, zip(*own, strict=True), strict=True):
            processor = self._processors.get(name)
            columns[name] = values if processor is None else map(processor, values)
        if self._order is None:
            return [
                dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)
            ]
        return list(zip(*(columns[name] for name in self._order), strict=True))

    def processed(self, values: dict[str, Any]) -> dict[str, Any]:
        """Return a copy of ``values`` with each column's bind processor applied."""
        return self._processing(dict(values))

    def _processing(self, values: dict[str, Any]) -> dict[str, Any]:
        """Apply each column's bind processor to ``values``, in place, and return them."""
        for name, processor in self._processors.items():
            if name in values:
                values[name] = processor(values[name])
        return values


def _row(entry: ExpectedEntry) -> tuple[Any, ...]:
    """Return an entry's own columns in :data:`EXPECTED_COLUMNS`' order (the run's are apart)."""
    return (
        entry.transaction_id,
        str(entry.source),
        str(entry.entry_type),
        entry.amount_minor,
        entry.currency.lower(),
        entry.created_at,
        entry.stripe_object_id,
        entry.topup_id,
        entry.stripe_customer_id,
        entry.company_id,
        entry.subscription_id,
        entry.unmapped_reason,
    )


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


def _bind_processor(column_type: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """Return what Core applies to a value of ``column_type`` before the driver gets it.

    The dialect's own implementation of the type decides (SQLite's ``DATETIME`` writes its
    text form with microseconds, after :class:`~reconcile.db.models.UTCDateTime`'s conversion).
    """
    return column_type.dialect_impl(dialect).bind_processor(dialect)
