"""Read a query's rows into a typed frame in bulk: columnar (Arrow) where it can, else by rows.

A read whose session has written nothing uncommitted runs through an ADBC connection of its own
(SQLite or PostgreSQL), which hands back Arrow columns: no Python object per cell, strings kept
as Arrow strings. A session with uncommitted writes (which that connection could not see), an
in-memory SQLite database or another backend reads through the session's own driver instead;
both give the same frame.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import adbc_driver_manager
import adbc_driver_manager.dbapi
import adbc_driver_postgresql.dbapi
import adbc_driver_sqlite.dbapi
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import (
    Column,
    MetaData,
    String,
    Table,
    event,
    func,
    literal_column,
    or_,
    select,
    text,
    type_coerce,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql import ColumnElement, Select

log = logging.getLogger(__name__)

CHUNK = 100_000
"""Rows fetched from the driver at a time."""

LISTED = 10_000
"""The most ids :func:`among` writes into a statement; more go through a temporary table."""

_IDS = "reconcile_ids"
"""The session-local temporary table that holds the ids a query joins against."""


def raw(column: QueryableAttribute[Any]) -> ColumnElement[Any]:
    """Return ``column`` read without its Python type's per-row conversion (see :func:`read`)."""
    return type_coerce(column, String).label(column.key)


def money_typed(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Return a read frame of money movements with ``columns`` in order and typed.

    ``created_at`` aware UTC, ``amount_minor`` int64, every other column text (missing
    stays missing); a column the frame lacks comes empty.
    """
    typed = frame.reindex(columns=list(columns))
    typed["created_at"] = typed["created_at"].astype("datetime64[us, UTC]")
    typed["amount_minor"] = typed["amount_minor"].astype("int64")
    for name in columns:
        if name not in ("created_at", "amount_minor"):
            typed[name] = typed[name].astype("str")
    return typed


def read(
    session: Session,
    statement: Select[Any],
    columns: Sequence[str],
    *,
    times: Collection[str] = (),
) -> pd.DataFrame:
    """Run ``statement`` and return its rows with ``times`` as ``datetime64[us, UTC]``.

    Columnar when :func:`columnar` allows, else by rows: time columns selected through
    :func:`raw` come back as the driver gives them (text on SQLite, aware datetimes on
    PostgreSQL) and are converted in one vectorised step.
    """
    return read_soon(session, statement, columns, times=times)()


def read_soon(
    session: Session,
    statement: Select[Any],
    columns: Sequence[str],
    *,
    times: Collection[str] = (),
    order: Sequence[str] = (),
) -> Callable[[], pd.DataFrame]:
    """Start :func:`read` of ``statement``; return what waits for its frame.

    With ``order``, the frame comes :func:`sorted_by` those columns, sorted in the background
    too where the read is.

    A columnar read runs at once in a thread of its own, through its own connection: the
    driver lets go of the interpreter while the database reads, so the caller's own work (the
    other side's read) goes on beside it, on the other core. A read by rows is done when its
    frame is asked for, as is one whose columnar read failed. Ask for the frame before
    ``session`` writes.
    """

    def by_rows() -> pd.DataFrame:
        rows = _read_rows(session, statement, columns, times)
        return sorted_by(rows, order) if order else rows

    if not columnar(session):
        return by_rows
    connection = session.connection()
    sql = str(statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconcile-read")
    reading = background.submit(_read_arrow, connection.engine, sql, columns, times, order)
    background.shutdown(wait=False)

    def frame() -> pd.DataFrame:
        try:
            return reading.result()
        except adbc_driver_manager.Error:
            log.debug("the columnar read failed; reading by rows")
            return by_rows()

    return frame


def _read_rows(
    session: Session, statement: Select[Any], columns: Sequence[str], times: Collection[str]
) -> pd.DataFrame:
    """Run ``statement`` through the session's own driver; return its rows as a frame."""
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


def carrying(values: pd.Series, ids: Collection[str]) -> pd.Series:
    """Return, row by row, whether ``values`` is one of ``ids`` (Arrow's hash lookup)."""
    listed = ids if isinstance(ids, pd.Series) else list(ids)
    texts = pa.array(values, type=pa.string(), from_pandas=True)
    wanted = pa.array(listed, type=pa.string(), from_pandas=True)
    if len(texts) < len(wanted):  # hash the fewer: the ids the values hold, then the values
        wanted = wanted.filter(pc.is_in(wanted, value_set=texts))
    found = pc.is_in(texts, value_set=wanted)
    return pd.Series(found.to_numpy(zero_copy_only=False), index=values.index, dtype=bool)


def sorted_by(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Return ``frame`` sorted by ``columns`` (stable, missing values last), index renumbered.

    Strings order by their UTF-8 bytes, as Python orders them. A frame in order already is
    returned as it is (no row copied).
    """
    order = sort_order(frame, columns)
    if np.array_equal(order, np.arange(len(frame))):
        return frame.reset_index(drop=True)
    if len(frame) < CHUNK:
        return frame.take(order).reset_index(drop=True)
    # Arrow's take lets go of the interpreter: a large frame's columns are taken on both cores
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="reconcile-take") as takers:
        taken = takers.map(lambda name: frame[name].take(order).reset_index(drop=True), frame)
        return pd.DataFrame(dict(zip(frame.columns, taken, strict=True)))


def sort_order(frame: pd.DataFrame, columns: Sequence[str]) -> npt.NDArray[np.int64]:
    """Return the positions of ``frame``'s rows sorted as :func:`sorted_by` sorts them.

    When the first column is a time without a missing one, the rows are ordered by it as
    integers (numpy's stable sort, quick on rows read nearly in order) and only the rows that
    share a time are ordered by the other columns, by Arrow's ``sort_indices``: pandas would
    factorize each Arrow string column first, and Arrow ordering by every column at once
    compares strings for every pair.
    """
    if not columns:
        return np.arange(len(frame))
    first = frame[columns[0]]
    if not _whole_times(first):
        return _arrow_order(frame, columns, np.arange(len(frame)))
    times = first.array.asi8
    order = np.argsort(times, kind="stable")
    ordered = times[order]
    same = ordered[1:] == ordered[:-1]
    if len(columns) < 2 or not same.any():
        return order
    tied = np.zeros(len(order), dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    positions = np.flatnonzero(tied)
    # the tied rows, in time order, sorted by every column: each time's rows keep their place
    order[positions] = _arrow_order(frame, columns, order[positions])
    return order


def _whole_times(column: pd.Series) -> bool:
    """Whether a column holds aware times, none missing (its values as integers order it)."""
    return isinstance(column.dtype, pd.DatetimeTZDtype) and not column.isna().any()


def _arrow_order(
    frame: pd.DataFrame, columns: Sequence[str], positions: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Return ``positions`` sorted by ``columns`` of those rows (stable, missing last)."""
    taken = pa.array(positions)
    keys = pa.table({name: pa.array(frame[name]).take(taken) for name in columns})
    inner = pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in columns])
    return np.asarray(positions[inner.to_numpy()], dtype=np.int64)


def to_utc(values: pd.Series) -> pd.Series:
    """Return ``values`` (naive-UTC ISO text or aware datetimes) as ``datetime64[us, UTC]``."""
    if values.empty:
        return pd.Series(values, dtype="datetime64[us, UTC]")
    return pd.to_datetime(values, utc=True, format="ISO8601").astype("datetime64[us, UTC]")


def columnar(session: Session) -> bool:
    """Whether reads through a connection of their own see what ``session`` sees.

    True for a file SQLite database while the session's connection has no transaction open (the
    driver opens one at the first write), and for PostgreSQL while its transaction holds no
    write (no transaction id assigned).
    """
    connection = session.connection()
    url = connection.engine.url
    if url.get_backend_name() == "sqlite":
        database = url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return False
        driver = connection.connection.driver_connection
        return not bool(getattr(driver, "in_transaction", True))
    if url.get_backend_name() == "postgresql":
        assigned = connection.execute(text("SELECT pg_current_xact_id_if_assigned()"))
        return assigned.scalar() is None
    return False


def within(
    session: Session, column: QueryableAttribute[Any], since: datetime, until: datetime
) -> ColumnElement[bool]:
    """Return ``since <= column < until``, written so that SQLite reads the window cheaply.

    On SQLite a window holding at least a quarter of the table's rows is read by scanning the
    table (rows in the order they were written) instead of walking ``column``'s index, which
    visits the table's pages out of order, a row at a time: two to three times slower for a
    window of most of the table. Counting the window on the index and finding the table's last
    row cost little; either way the work grows with the window.
    """
    bounded = (column >= since) & (column < until)
    if session.get_bind().dialect.name != "sqlite":
        return bounded
    table = column.class_.__table__
    connection = session.connection()
    window: int = connection.execute(select(func.count()).where(bounded)).scalar_one()
    rows: int | None = connection.execute(
        select(func.max(literal_column("rowid"))).select_from(table)
    ).scalar_one()
    if not window or window * 4 < (rows or 0):
        return bounded
    # a unary + keeps SQLite from using the column's index for this condition
    scanned = literal_column(f"+{table.name}.{column.key}", type_=column.type)
    return (scanned >= since) & (scanned < until)


def outside_fewer(
    session: Session, column: QueryableAttribute[Any], since: datetime, until: datetime, than: int
) -> bool:
    """Whether fewer than ``than`` rows of ``column``'s table lie outside ``[since, until)``.

    Counted on ``column``'s index, at most ``than`` entries.
    """
    outside: Select[Any] = (
        select(literal_column("1")).where(or_(column < since, column >= until)).limit(than)
    )
    counted = select(func.count()).select_from(outside.subquery())
    return bool(session.connection().execute(counted).scalar_one() < than)


def fewer(session: Session, query: Select[*tuple[Any, ...]], than: int) -> bool:
    """Whether ``query`` returns fewer than ``than`` rows; it is run for at most ``than``.

    Lets a lookup of many ids read the few rows there are instead, when there are fewer.
    """
    counted = select(func.count()).select_from(query.limit(than).subquery())
    return bool(session.connection().execute(counted).scalar_one() < than)


def among(
    session: Session, column: QueryableAttribute[Any], ids: Collection[str]
) -> ColumnElement[bool]:
    """Return the condition ``column`` is one of ``ids``, for a query :func:`read` runs.

    A columnar read sees the ids written into the statement; a read by rows joins them from
    the session's temporary table (:func:`ids_table`), which no other connection sees.
    """
    if len(ids) <= LISTED and columnar(session):
        return column.in_(sorted(_distinct(ids)))
    return column.in_(ids_table(session, ids).select())


def _read_arrow(
    engine: Engine,
    sql: str,
    columns: Sequence[str],
    times: Collection[str],
    order: Sequence[str] = (),
) -> pd.DataFrame:
    """Run ``sql`` through an ADBC connection of its own; return the frame it reads.

    Sorted by ``order`` (:func:`sorted_by`) when given.

    Uses no connection of ``engine``'s (only its URL), so it may run in a thread of its own.
    """
    with _adbc(engine) as adbc, adbc.cursor() as cursor:
        if engine.url.get_backend_name() == "sqlite":
            # one batch: the SQLite driver infers each column's type from the first batch
            cursor.adbc_statement.set_options(**{_BATCH_ROWS: str(2**30)})
        cursor.execute(sql)
        table = cursor.fetch_arrow_table()
    arrays = {}
    for index, name in enumerate(columns):
        values = table.column(index)
        if name in times:
            arrays[name] = _arrow_utc(values)
        elif pa.types.is_null(values.type) or (
            pa.types.is_integer(values.type) and values.null_count == len(values)
        ):
            # a column with no value in this result: SQLite's driver types it int64
            arrays[name] = pa.nulls(len(values), pa.string())
        else:
            arrays[name] = values
    frame: pd.DataFrame = pa.table(arrays).to_pandas(split_blocks=True)
    for name in times:
        frame[name] = frame[name].astype("datetime64[us, UTC]")
    return sorted_by(frame, order) if order else frame


_BATCH_ROWS = "adbc.sqlite.query.batch_rows"


def _arrow_utc(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Return naive-UTC ISO text (SQLite) or aware times (PostgreSQL) as UTC microseconds."""
    utc = pa.timestamp("us", "UTC")
    if pa.types.is_timestamp(values.type):
        return pc.cast(values, utc)
    if pa.types.is_null(values.type) or values.null_count == len(values):
        return pa.nulls(len(values), utc)
    return pc.cast(pc.cast(values, pa.timestamp("us")), utc)


@contextlib.contextmanager
def _adbc(engine: Engine) -> Iterator[Any]:
    """Open an ADBC connection to ``engine``'s database; close it after."""
    url = engine.url
    adbc: adbc_driver_manager.dbapi.Connection
    if url.get_backend_name() == "sqlite":
        adbc = adbc_driver_sqlite.dbapi.connect(url.database)
    else:
        adbc = _postgresql_databases.connect(engine)
    try:
        yield adbc
    finally:
        adbc.close()


class _SharedDatabases:
    """One ADBC PostgreSQL database per engine, each read's connection opened from it.

    Opening the driver's database asks the server for its types (about 30 ms: most of a small
    run's reads, once per connected account's run); a connection opened from an open database
    takes 2 ms. The database is held by a first connection, opened with the engine's first
    columnar read, and closed with the engine (its ``dispose()``, or when it is collected), as
    the engine's own pooled connections are.
    """

    def __init__(self) -> None:
        self._roots: weakref.WeakKeyDictionary[
            Engine, tuple[adbc_driver_manager.dbapi.Connection, weakref.finalize[Any, Any]]
        ] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def connect(self, engine: Engine) -> adbc_driver_manager.dbapi.Connection:
        """Return a new connection sharing ``engine``'s database (opened the first time)."""
        with self._lock:
            if engine not in self._roots:
                uri = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
                root = adbc_driver_postgresql.dbapi.connect(uri)
                self._roots[engine] = (root, weakref.finalize(engine, root.close))
                if not event.contains(engine, "engine_disposed", self._close):
                    event.listen(engine, "engine_disposed", self._close)
            root, _ = self._roots[engine]
            return root.adbc_clone()

    def _close(self, engine: Engine) -> None:
        """Close ``engine``'s database: the engine has let go of its connections."""
        with self._lock:
            _, closing = self._roots.pop(engine, (None, None))
        if closing is not None:
            closing()  # the first connection; the database closes with the last clone


_postgresql_databases = _SharedDatabases()


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
    if len(ids):
        # The driver's own executemany of one statement: no per-row work in SQLAlchemy.
        marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        connection.exec_driver_sql(
            f"INSERT INTO {_IDS} (id) VALUES ({marker})", [(value,) for value in _distinct(ids)]
        )
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"ANALYZE {_IDS}")
    return table


def _distinct(ids: Collection[str]) -> set[str]:
    """Return the ids once each; a column's are taken as Python values at once."""
    return set(ids.tolist() if isinstance(ids, pd.Series) else ids)
