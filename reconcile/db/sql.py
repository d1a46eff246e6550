"""What every query module shares: ``IN`` lists in chunks, and the backend's upsert statement."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reconcile.db.models import Base
from reconcile.frames import each_once

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


def insert_columns(
    session: Session, table: Table, columns: dict[str, Sequence[Any] | pd.Series]
) -> None:
    """Insert rows given column by column (equal lengths) in one ``executemany`` of the driver.

    Each value is bound as SQLAlchemy binds it (its column type's bind processor, once per
    distinct value), then the rows go to the driver as they are: none of SQLAlchemy's per-row
    work, most of the cost of an ORM or Core ``executemany`` of many rows. A column of aware
    times may come as a frame's column: on SQLite it is written as SQLAlchemy writes a time, in
    one vectorised step.
    """
    connection = session.connection()
    dialect = connection.dialect
    bound = []
    for name, values in columns.items():
        if isinstance(values, pd.Series) and dialect.name == "sqlite":
            bound.append(sqlite_times(values))
            continue
        if isinstance(values, pd.Series):
            values = [None if pd.isna(value) else value.to_pydatetime() for value in values]
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        bound.append(list(values) if process is None else each_once(process, values))
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    quote = dialect.identifier_preparer.quote
    statement = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(name) for name in columns)}) "
        f"VALUES ({', '.join([marker] * len(columns))})"
    )
    rows = list(zip(*bound, strict=True))
    if rows:
        connection.exec_driver_sql(statement, rows)


def sqlite_times(values: pd.Series) -> list[str | None]:
    """Return aware times as SQLAlchemy stores them on SQLite: naive UTC text, to the microsecond.

    ``YYYY-MM-DD HH:MM:SS.ffffff``; a missing time is ``None``.
    """
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        raise TypeError(f"expected aware times, not {values.dtype}")
    naive = values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    text = pa.array(np.datetime_as_string(naive, unit="us"), type=pa.string())
    text = pc.replace_substring(text, "T", " ", max_replacements=1)
    return list(pc.if_else(pa.array(np.isnat(naive)), None, text).to_pylist())
