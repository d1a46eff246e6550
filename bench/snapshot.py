"""Fill a snapshot database with generated rows, in bulk, as a run's sync would have left it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, func, select

from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.db.models import ExpectedRow, LedgerEntry, MoesifSubscription
from reconcile.domain.values import EXPECTED_COLUMNS, LEDGER_COLUMNS

CHUNK = 50_000
"""Rows per ``executemany``."""

SEEDED_AT = datetime.fromisoformat("2026-11-08T00:00:00+00:00")
"""What the seeded rows record as first and last seen."""


def fill(
    url: str, expected: pd.DataFrame, ledger: pd.DataFrame, currencies: dict[str, str | None]
) -> None:
    """Build the schema at ``url`` and write the rows; refuse a database that holds rows."""
    engine = make_engine(url)
    try:
        upgrade_to_head(engine)
        _refuse_if_used(engine)
        run = "bench"
        _insert(
            engine,
            ExpectedRow.__tablename__,
            expected.assign(first_seen_run_id=run, last_seen_run_id=run, updated_at=SEEDED_AT),
            [*EXPECTED_COLUMNS, "first_seen_run_id", "last_seen_run_id", "updated_at"],
        )
        _insert(
            engine,
            LedgerEntry.__tablename__,
            ledger.assign(first_seen_at=SEEDED_AT, last_seen_at=SEEDED_AT),
            [*LEDGER_COLUMNS, "first_seen_at", "last_seen_at"],
        )
        owners = (
            expected.drop_duplicates("subscription_id")
            .set_index("subscription_id")["company_id"]
            .to_dict()
        )
        subscriptions = pd.DataFrame(
            {
                "subscription_id": list(currencies),
                "currency": list(currencies.values()),
                "company_id": [owners.get(subscription) for subscription in currencies],
                "fetched_at": SEEDED_AT,
            }
        )
        _insert(engine, MoesifSubscription.__tablename__, subscriptions, list(subscriptions))
    finally:
        engine.dispose()


def _refuse_if_used(engine: Engine) -> None:
    with engine.connect() as connection:
        for table in (ExpectedRow, LedgerEntry):
            if connection.execute(select(func.count()).select_from(table)).scalar_one():
                raise SystemExit(
                    f"bench: {engine.url.database} already holds rows; give an empty one"
                )


def _insert(engine: Engine, table: str, frame: pd.DataFrame, columns: list[str]) -> None:
    """Write ``frame`` with the driver's ``executemany``; times as the column type stores them."""
    sqlite = engine.dialect.name == "sqlite"
    marker = "?" if sqlite else "%s"
    statement = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([marker] * len(columns))})"
    )
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for rows in _chunks(frame[columns], sqlite):
            cursor.executemany(statement, rows)
        raw.commit()
    finally:
        raw.close()


def _chunks(frame: pd.DataFrame, sqlite: bool) -> Iterator[list[tuple[Any, ...]]]:
    for start in range(0, len(frame), CHUNK):
        part = frame.iloc[start : start + CHUNK]
        columns = []
        for name in part.columns:
            column = part[name]
            if isinstance(column.dtype, pd.DatetimeTZDtype) or name.endswith("_at"):
                times = pd.to_datetime(column, utc=True)
                if sqlite:
                    # what SQLAlchemy's SQLite DateTime stores: naive UTC text with microseconds
                    values = times.dt.strftime("%Y-%m-%d %H:%M:%S.%f").tolist()
                else:
                    values = times.dt.to_pydatetime().tolist()
            elif name == "amount_minor":
                values = [int(value) for value in column.to_numpy()]
            else:
                values = [None if pd.isna(value) else value for value in column.tolist()]
            columns.append(values)
        yield list(zip(*columns, strict=True))
