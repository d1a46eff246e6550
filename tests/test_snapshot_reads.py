"""Reading the snapshot in bulk: the window, and every row naming one of the given ids."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import adbc_driver_manager
import adbc_driver_manager.dbapi
import adbc_driver_postgresql.dbapi
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from adbc_driver_manager import AdbcStatusCode
from sqlalchemy import Engine, make_url, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from reconcile.db import frames
from reconcile.db.balance_chains import touched_subscriptions
from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.db.expected import store_expected
from reconcile.db.expected_frames import expected_frame
from reconcile.db.findings import remembered_pairs, store_findings
from reconcile.db.ledger import ledger_frame, ledger_reading, store_ledger_rows
from reconcile.db.models import Finding, Run
from reconcile.db.sql import sqlite_times
from reconcile.db.subscriptions import keep_currency, kept_currencies
from reconcile.domain.values import FINDING_COLUMNS, ExpectedEntry, LedgerRow
from reconcile.domain.vocab import EntryType
from tests.conftest import _empty_postgres

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def row(moesif_id: str, transaction_id: str, created_at: datetime) -> LedgerRow:
    return LedgerRow(
        moesif_id=moesif_id,
        transaction_id=transaction_id,
        entry_type=EntryType.CREDIT,
        amount_minor=100,
        amount_raw="1",
        currency="usd",
        company_id="co_1",
        subscription_id="sub_1",
        created_at=created_at,
        description=None,
    )


def test_an_id_inside_the_window_still_brings_its_rows_from_outside(engine: Engine) -> None:
    with Session(engine) as session:
        store_ledger_rows(
            session,
            [
                row("m_in", "pi_1", T0 + timedelta(hours=1)),
                row("m_retry_days_before", "pi_1", T0 - timedelta(days=9)),
                row("m_old", "pi_2", T0 - timedelta(days=9)),
                row("m_unnamed", "pi_3", T0 - timedelta(days=9)),
            ],
            now=T0,
        )
        frame = ledger_frame(session, T0, T0 + timedelta(days=1), ["pi_1", "pi_2", "pi_none"])
        again = ledger_frame(session, T0, T0 + timedelta(days=1), ["pi_3"])
    assert frame["moesif_id"].tolist() == ["m_old", "m_retry_days_before", "m_in"]
    assert str(frame["created_at"].dtype) == "datetime64[us, UTC]"
    assert again["moesif_id"].tolist() == ["m_unnamed", "m_in"]


def test_kept_currencies_are_read_in_one_go(engine: Engine) -> None:
    with Session(engine) as session:
        keep_currency(session, "sub_1", "eur", T0)
        keep_currency(session, "sub_2", None, T0)
        session.flush()
        kept = kept_currencies(session)
    assert {name: value.currency for name, value in kept.items()} == {"sub_1": "eur", "sub_2": None}
    assert kept["sub_1"].fetched_at == T0


def entry(transaction_id: str, created_at: datetime, company_id: str | None) -> ExpectedEntry:
    return ExpectedEntry(
        transaction_id=transaction_id,
        source="topup",
        entry_type=EntryType.CREDIT,
        amount_minor=2**40,
        currency="usd",
        created_at=created_at,
        stripe_object_id=transaction_id,
        topup_id=transaction_id,
        stripe_customer_id="cus_1",
        company_id=company_id,
        subscription_id=None if company_id is None else "sub_1",
        unmapped_reason="no company" if company_id is None else None,
    )


def test_committed_rows_read_columnar_as_they_read_by_rows(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Arrow read and the driver's rows give one frame, NULL-led columns and times alike."""
    day = timedelta(days=1)
    # 1,500 rows without a transaction id or description first: more than a batch of them
    bare = [
        replace(row(f"m_bare_{n:04d}", "x", T0 + timedelta(seconds=n)), transaction_id=None)
        for n in range(1500)
    ]
    named = [
        replace(row("m_named", "pi_1", T0 + timedelta(hours=1, microseconds=7)), description="d"),
        row("m_old", "pi_1", T0 - 9 * day),
        row("m_extra", "pi_9", T0 - 9 * day),
    ]
    with Session(engine) as session:
        store_ledger_rows(session, [*bare, *named], now=T0)
        store_expected(
            session,
            [entry("pi_1", T0, "co_1"), entry("pi_2", T0 + timedelta(hours=2), None)],
            run_id="run-1",
            now=T0,
        )
        session.commit()
    arrow_reads: list[int] = []
    read_arrow = frames._read_arrow

    def counted(*args: object, **kwargs: object) -> pd.DataFrame:
        found = read_arrow(*args, **kwargs)  # type: ignore[arg-type]
        arrow_reads.append(len(found))
        return found

    def both() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        with Session(engine) as session:
            # three ids, two rows outside the window: those rows are read and kept by id
            ledger = ledger_frame(session, T0, T0 + day, ["pi_1", "pi_2", "pi_9"])
            # one id, two rows outside: the id is looked up
            looked_up = ledger_frame(session, T0, T0 + day, ["pi_9"])
            return ledger, looked_up, expected_frame(session, T0, T0 + day)

    monkeypatch.setattr(frames, "_read_arrow", counted)
    ledger, looked_up, expected = both()
    assert arrow_reads == [1501, 2, 1501, 1, 2]
    assert looked_up["moesif_id"].tolist()[:2] == ["m_extra", "m_bare_0000"]
    monkeypatch.setattr(frames, "columnar", lambda _session: False)
    by_rows_ledger, by_rows_looked_up, by_rows_expected = both()
    pd.testing.assert_frame_equal(ledger, by_rows_ledger)
    pd.testing.assert_frame_equal(looked_up, by_rows_looked_up)
    pd.testing.assert_frame_equal(expected, by_rows_expected)
    assert ledger["moesif_id"].tolist()[:3] == ["m_extra", "m_old", "m_bare_0000"]
    assert ledger["transaction_id"].isna().sum() == 1500
    assert ledger.loc[ledger["moesif_id"] == "m_named", "description"].tolist() == ["d"]
    assert ledger["created_at"].iloc[-1] == pd.Timestamp(T0 + timedelta(hours=1, microseconds=7))
    assert expected["amount_minor"].tolist() == [2**40, 2**40]
    assert expected["unmapped_reason"].isna().tolist() == [True, False]


def test_a_session_with_uncommitted_writes_reads_them_by_rows(engine: Engine) -> None:
    with Session(engine) as session:
        assert frames.columnar(session) == (engine.url.database != ":memory:")
        store_ledger_rows(session, [row("m_1", "pi_1", T0)], now=T0)
        assert not frames.columnar(session)
        assert ledger_frame(session, T0, T0 + timedelta(days=1))["moesif_id"].tolist() == ["m_1"]


def test_a_columnar_read_that_fails_in_the_background_is_read_by_rows(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Session(engine) as session:
        store_ledger_rows(session, [row("m_1", "pi_1", T0), row("m_2", "pi_2", T0)], now=T0)
        session.commit()
    threads: list[str] = []

    def failing(*_args: object, **_kwargs: object) -> pd.DataFrame:
        threads.append(threading.current_thread().name)
        raise adbc_driver_manager.OperationalError("boom", status_code=AdbcStatusCode.IO)

    monkeypatch.setattr(frames, "_read_arrow", failing)
    with Session(engine) as session:
        read = ledger_reading(session, T0, T0 + timedelta(days=1))
        frame = read(["pi_1"])
    assert frame["moesif_id"].tolist() == ["m_1", "m_2"]
    # each read (the window, the rows outside it) tried in a thread of its own first
    assert threads == ["reconcile-read_0", "reconcile-read_0"]


def test_findings_stored_column_by_column_read_back_as_the_orm_gives_them(engine: Engine) -> None:
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    findings = pd.DataFrame(
        {
            "category": ["amount_mismatch", "missing_in_stripe"],
            "action": ["flagged", "flagged"],
            "company_id": ["co_é", None],
            "subscription_id": ["sub_1", None],
            "stripe_customer_id": ["cus_1", None],
            "stripe_object_id": ["pi_1", None],
            "transaction_id": ["pi_1", None],
            "entry_type": ["credit", "debit"],
            "currency": ["usd", "jpy"],
            "stripe_amount_minor": pd.array([2**40, None], dtype="Int64"),
            "moesif_amount_minor": pd.array([-5, 7], dtype="Int64"),
            "stripe_created_at": pd.array([at, None], dtype="datetime64[us, UTC]"),
            "moesif_created_at": pd.array([at, at], dtype="datetime64[us, UTC]"),
            "moesif_id": [None, "m_1"],
            "detail": ['it\'s "quoted"; 1,2', None],
            "finding_id": ["F-1", None],
        }
    )
    with Session(engine) as session, session.begin():
        session.add(Run(id="run-1", since=T0, until=T0, status="running", started_at=T0))
        session.flush()
        assert store_findings(session, "run-1", findings) == 2
    with Session(engine) as session:
        stored = session.scalars(select(Finding).order_by(Finding.id)).all()
    assert [(f.run_id, f.category, f.company_id, f.detail, f.finding_id) for f in stored] == [
        ("run-1", "amount_mismatch", "co_é", 'it\'s "quoted"; 1,2', "F-1"),
        ("run-1", "missing_in_stripe", None, None, None),
    ]
    assert [(f.stripe_amount_minor, f.moesif_amount_minor) for f in stored] == [
        (2**40, -5),
        (None, 7),
    ]
    assert [(f.stripe_created_at, f.moesif_created_at) for f in stored] == [(at, at), (None, at)]


@pytest.mark.parametrize("asked", [3, frames.LISTED + 5])
def test_remembered_pairs_are_read_in_one_query_the_latest_real_run_winning(
    engine: Engine, asked: int
) -> None:
    def matched(moesif_id: str, transaction_id: str) -> dict[str, object]:
        return {"category": "matched_by_amount", "action": "none"} | {
            "moesif_id": moesif_id,
            "transaction_id": transaction_id,
        }

    runs = [("run-old", T0, False), ("run-dry", T0 + timedelta(hours=2), True)]
    runs += [("run-new", T0 + timedelta(hours=1), False)]
    chosen = {"run-old": "pi_old", "run-dry": "pi_dry", "run-new": "pi_new"}
    with Session(engine) as session, session.begin():
        for run_id, started, dry in runs:
            run = Run(id=run_id, since=T0, until=T0, status="ok", started_at=started, dry_run=dry)
            session.add(run)
            session.flush()
            found = [matched("m_1", chosen[run_id]), matched("m_2", "pi_2")]
            if run_id == "run-old":
                found.append(matched("m_3", "pi_3"))
            store_findings(session, run_id, pd.DataFrame(found).reindex(columns=FINDING_COLUMNS))
    ids = ["m_1", "m_3", "m_x"] + [f"m_other_{n}" for n in range(asked - 3)]
    with Session(engine) as session:
        pairs = remembered_pairs(session, ids)
    assert pairs == {"m_1": "pi_new", "m_3": "pi_3"}


@pytest.mark.parametrize("seed", range(5))
def test_sorting_by_time_then_text_orders_as_arrow_orders_every_column(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = 2_000
    times = pd.Series(
        pd.to_datetime(rng.integers(0, 50, size), unit="s", utc=True), dtype="datetime64[us, UTC]"
    )
    texts = pd.Series(rng.choice(["b", "a", "é", "Z", "a_1", None], size), dtype="str")
    frame = pd.DataFrame({"created_at": times, "moesif_id": texts, "n": np.arange(size)})
    keys = pa.table({"created_at": pa.array(times), "moesif_id": pa.array(texts)})
    expected = pc.sort_indices(
        keys, sort_keys=[("created_at", "ascending"), ("moesif_id", "ascending")]
    )
    assert frames.sort_order(frame, ["created_at", "moesif_id"]).tolist() == expected.to_pylist()
    ordered = frames.sorted_by(frame, ["created_at", "moesif_id"])
    assert ordered["n"].tolist() == expected.to_pylist()
    assert frames.sorted_by(ordered, ["created_at", "moesif_id"]).equals(ordered)


def test_the_touched_subscriptions_are_the_window_rows_distinct_ones(engine: Engine) -> None:
    rows = [
        row("m_1", "pi_1", T0),
        replace(row("m_2", "pi_2", T0 + timedelta(hours=1)), subscription_id="sub_2"),
        replace(row("m_3", "pi_3", T0), subscription_id=None),
        replace(row("m_4", "pi_4", T0 - timedelta(days=2)), subscription_id="sub_old"),
        row("m_5", "pi_5", T0 + timedelta(hours=2)),
    ]
    with Session(engine) as session:
        store_ledger_rows(session, rows, now=T0)
        session.commit()
    with Session(engine) as session:
        assert touched_subscriptions(session, T0, T0 + timedelta(days=1), ()) == ["sub_1", "sub_2"]
        assert touched_subscriptions(session, T0, T0 + timedelta(days=1), ["co_x"]) == []


def test_times_bound_as_a_column_are_written_as_sqlalchemy_writes_each() -> None:
    times = [
        datetime(2026, 3, 1, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(
            2026, 3, 2, 1, 30, tzinfo=timezone(timedelta(hours=2))
        ),  # 23:30 UTC the day before
        None,
        datetime(1999, 12, 31, tzinfo=UTC),
    ]
    column = pd.Series(times, dtype="datetime64[us, UTC]")
    dialect = sqlite.dialect()
    processor = Finding.__table__.c["stripe_created_at"].type.dialect_impl(dialect)
    each = processor.bind_processor(dialect)
    assert each is not None
    assert sqlite_times(column) == [each(value) for value in times]
    assert sqlite_times(column)[1] == "2026-03-01 23:30:00.000000"


@pytest.mark.postgres
def test_postgresql_reads_open_the_drivers_database_once_and_close_it_with_the_engine(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _empty_postgres(postgres_database)
    # Named, so that only this engine's connections (and the driver's, opened from its URL) are
    # counted, whatever else of this test process is connected to its database.
    named = make_url(postgres_database).update_query_dict({"application_name": "reads_once"})
    engine = make_engine(named.render_as_string(hide_password=False))
    upgrade_to_head(engine)
    opened: list[str] = []
    connect = adbc_driver_postgresql.dbapi.connect

    def counted(uri: str, **options: object) -> adbc_driver_manager.dbapi.Connection:
        opened.append(uri)
        return connect(uri, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(adbc_driver_postgresql.dbapi, "connect", counted)
    with Session(engine) as session:
        store_ledger_rows(session, [row("m_1", "pi_1", T0), row("m_2", "pi_2", T0)], now=T0)
        session.commit()
    for _ in range(3):  # a run reads several times: one driver database for them all
        with Session(engine) as session:
            assert frames.columnar(session)
            read = ledger_frame(session, T0, T0 + timedelta(days=1))
        assert read["moesif_id"].tolist() == ["m_1", "m_2"]
    assert len(opened) == 1

    admin = make_engine(postgres_database)
    ours = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = 'reads_once'"
    )
    try:
        with admin.connect() as connection:
            assert connection.execute(ours).scalar_one() >= 1  # the driver's database held
        engine.dispose()
        # Closed with the engine. The server ends a backend a moment after its client leaves
        # (pg_stat_activity lists it until then), so the count is read, each time in a
        # transaction of its own (a transaction sees one snapshot of it), until it falls, for at
        # most a few seconds: a database left open keeps it at one for good.
        deadline = time.monotonic() + 5
        with admin.connect() as connection:
            while (held := connection.execute(ours).scalar_one()) and time.monotonic() < deadline:
                connection.rollback()
                time.sleep(0.02)
        assert held == 0
    finally:
        admin.dispose()
    with Session(engine) as session:  # a disposed engine reads again, with a database anew
        assert ledger_frame(session, T0, T0 + timedelta(days=1))["moesif_id"].size == 2
    assert len(opened) == 2
    engine.dispose()
