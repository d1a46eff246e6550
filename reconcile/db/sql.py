"""What every query module shares: ``IN`` lists in chunks, and the backend's upsert statement."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reconcile.db.models import Base

IN_CHUNK = 500
"""Values per ``IN (...)`` list, under every backend's parameter limit."""


def chunks(items: Iterable[str], size: int = IN_CHUNK) -> Iterator[list[str]]:
    """Yield the distinct ``items``, sorted, in lists of at most ``size``."""
    ordered = sorted(set(items))
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def upsert(
    session: Session, table: type[Base], rows: list[dict[str, Any]]
) -> postgresql.Insert | sqlite.Insert:
    """Return ``INSERT … VALUES rows`` for the session's backend, ready for ``ON CONFLICT``."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table).values(rows)
    return sqlite.insert(table).values(rows)


def insert_columns(session: Session, table: Table, columns: dict[str, list[Any]]) -> None:
    """Insert rows given column by column (equal lengths) in one ``executemany`` of the driver.

    Each value is bound as SQLAlchemy binds it (its column type's bind processor, a column at
    a time), then the rows go to the driver as they are: none of SQLAlchemy's per-row work,
    most of the cost of an ORM or Core ``executemany`` of many rows.
    """
    connection = session.connection()
    dialect = connection.dialect
    bound = []
    for name, values in columns.items():
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        bound.append(values if process is None else [process(value) for value in values])
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    quote = dialect.identifier_preparer.quote
    statement = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(name) for name in columns)}) "
        f"VALUES ({', '.join([marker] * len(columns))})"
    )
    rows = list(zip(*bound, strict=True))
    if rows:
        connection.exec_driver_sql(statement, rows)
