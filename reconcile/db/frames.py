"""Read a query's rows into a typed frame in bulk: raw column values, times converted at once."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Column, MetaData, String, Table, type_coerce
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql import ColumnElement, Select

CHUNK = 100_000
"""Rows fetched from the driver at a time."""

_IDS = "reconcile_ids"
"""The session-local temporary table that holds the ids a query joins against."""


def raw(column: QueryableAttribute[Any]) -> ColumnElement[Any]:
    """Return ``column`` read without its Python type's per-row conversion (see :func:`read`)."""
    return type_coerce(column, String).label(column.key)


def read(
    session: Session,
    statement: Select[Any],
    columns: Sequence[str],
    *,
    times: Collection[str] = (),
) -> pd.DataFrame:
    """Run ``statement`` and return its rows with ``times`` as ``datetime64[us, UTC]``.

    Time columns selected through :func:`raw` come back as the driver gives them (text on
    SQLite, aware datetimes on PostgreSQL) and are converted in one vectorised step.
    """
    result = session.connection().execute(statement)
    parts = []
    try:
        # The driver's own tuples, a chunk at a time, so that a chunk's tuples are freed once it
        # is a frame; every selected type needs no conversion (see :func:`raw`).
        cursor = result.cursor
        while cursor is not None and (rows := cursor.fetchmany(CHUNK)):
            part = pd.DataFrame.from_records(rows, columns=list(columns), coerce_float=False)
            for name in times:
                part[name] = to_utc(part[name])
            parts.append(part)
    finally:
        result.close()
    if not parts:
        empty = pd.DataFrame(columns=list(columns))
        for name in times:
            empty[name] = to_utc(empty[name])
        return empty
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def to_utc(values: pd.Series) -> pd.Series:
    """Return ``values`` (naive-UTC ISO text or aware datetimes) as ``datetime64[us, UTC]``."""
    if values.empty:
        return pd.Series(values, dtype="datetime64[us, UTC]")
    return pd.to_datetime(values, utc=True, format="ISO8601").astype("datetime64[us, UTC]")


def ids_table(session: Session, ids: Collection[str]) -> Table:
    """Fill (replacing) a temporary one-column table with ``ids`` and return it.

    One ``executemany`` by the driver; the table lives as long as the connection.
    Query it as ``column.in_(select(table.c.id))``: SQLite then walks the ids through the
    column's index instead of scanning the whole table (as it does for a join), and
    PostgreSQL is given the table's statistics.
    """
    table = Table(_IDS, MetaData(), Column("id", String, primary_key=True), prefixes=["TEMPORARY"])
    connection = session.connection()
    table.create(connection, checkfirst=True)
    connection.execute(table.delete())
    if ids:
        # The driver's own executemany of one statement: no per-row work in SQLAlchemy.
        marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        connection.exec_driver_sql(
            f"INSERT INTO {_IDS} (id) VALUES ({marker})", [(value,) for value in set(ids)]
        )
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"ANALYZE {_IDS}")
    return table
