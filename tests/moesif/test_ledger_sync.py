"""Normalising billing-report rows, and syncing them into the snapshot on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from reconcile.db.ledger import ledger_frame
from reconcile.db.models import LedgerEntry, UnreadableLedgerRow
from reconcile.domain.values import LEDGER_COLUMNS
from reconcile.domain.vocab import EntryType
from reconcile.errors import MoesifReadCut
from reconcile.fakes.moesif import FakeMoesif
from reconcile.ledger_sync import SyncResult, sync_ledger
from reconcile.moesif.client import MoesifClient
from reconcile.moesif.rows import dump_json, normalise, parse_json

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
NOW = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)


def _no_currency(_subscription_id: str) -> str | None:
    return None


def _row(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "_id": "r1",
        "company_id": "co_1",
        "subscription_id": "sub_1",
        "type": "credit",
        "amount": Decimal("10.50"),
        "created_at": "2026-03-01T10:00:00.000Z",
    }
    return {key: value for key, value in {**base, **fields}.items() if value is not None}


# Normalising rows (pure).


def test_json_numbers_stay_exact_both_ways() -> None:
    parsed = parse_json('{"amount": 10.10, "n": 3, "big": 12345678901234567890.01}')
    assert isinstance(parsed, dict)
    assert str(parsed["amount"]) == "10.10"
    assert str(parsed["big"]) == "12345678901234567890.01"
    assert dump_json({"a": Decimal("1E+2"), "b": [Decimal("-0.50"), "x", None]}) == (
        '{"a": 100, "b": [-0.50, "x", null]}'
    )
    with pytest.raises(TypeError):
        dump_json({"amount": 10.5})


@pytest.mark.parametrize(
    ("fields", "entry_type", "minor", "raw"),
    [
        ({"type": "credit", "amount": Decimal("10.50")}, EntryType.CREDIT, 1050, "10.50"),
        ({"type": "debit", "amount": Decimal("2.25")}, EntryType.DEBIT, 225, "2.25"),
        ({"type": "promotion", "amount": 5}, EntryType.PROMOTION, 500, "5"),
        ({"type": "adjustment", "amount": Decimal("1")}, EntryType.ADJUSTMENT, 100, "1"),
        (
            {"type": "balance_transaction", "amount": Decimal("10.50")},
            EntryType.CREDIT,
            1050,
            "10.50",
        ),
        (
            {"type": "balance_transaction", "amount": Decimal("-2.25")},
            EntryType.DEBIT,
            225,
            "-2.25",
        ),
        ({"type": "CREDIT", "amount": Decimal("1.005")}, EntryType.CREDIT, 100, "1.005"),
        ({"type": "usage", "billing_meter_id": "m_1", "amount": None}, EntryType.USAGE, 0, "0"),
        ({"type": "credit", "billing_meter_id": "m_1"}, EntryType.USAGE, 1050, "10.50"),
    ],
)
def test_row_kinds(fields: dict[str, Any], entry_type: EntryType, minor: int, raw: str) -> None:
    row = normalise(_row(**fields), amount_unit="major", currency_for=_no_currency)
    assert (row.entry_type, row.amount_minor, row.amount_raw) == (entry_type, minor, raw)


@pytest.mark.parametrize(
    ("fields", "entry_type"),
    [
        ({"type": "refund_note"}, EntryType.USAGE),
        ({"type": "balance_transaction", "amount": Decimal(0)}, EntryType.USAGE),
        ({"type": "credit", "amount": Decimal("-3")}, EntryType.CREDIT),
        ({"type": "debit", "amount": Decimal("-3")}, EntryType.DEBIT),
    ],
)
def test_odd_rows_are_kept_safely_with_a_warning(
    fields: dict[str, Any], entry_type: EntryType, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="reconcile.moesif.rows"):
        row = normalise(_row(**fields), amount_unit="major", currency_for=_no_currency)
    assert row.entry_type == entry_type
    assert row.amount_minor >= 0
    assert "r1" in caplog.text


def test_minor_unit_amounts_round_half_even() -> None:
    def minor(amount: Decimal) -> int:
        row = normalise(_row(amount=amount), amount_unit="minor", currency_for=_no_currency)
        return row.amount_minor

    assert minor(Decimal(1050)) == 1050
    assert minor(Decimal("1050.5")) == 1050
    assert minor(Decimal("1051.5")) == 1052


def test_currency_comes_from_the_row_then_the_subscription_then_usd() -> None:
    asked: list[str] = []

    def currency_for(subscription_id: str) -> str | None:
        asked.append(subscription_id)
        return "jpy" if subscription_id == "sub_1" else None

    own = normalise(_row(currency="EUR"), amount_unit="major", currency_for=currency_for)
    assert (own.currency, asked) == ("eur", [])
    subs = normalise(_row(amount=Decimal(1000)), amount_unit="major", currency_for=currency_for)
    assert (subs.currency, subs.amount_minor) == ("jpy", 1000)
    other = normalise(_row(subscription_id="sub_9"), amount_unit="major", currency_for=currency_for)
    assert other.currency == "usd"
    nobody = normalise(_row(subscription_id=None), amount_unit="major", currency_for=currency_for)
    assert (nobody.currency, asked) == ("usd", ["sub_1", "sub_9"])


def test_times_are_utc() -> None:
    def created(**fields: Any) -> datetime:
        return normalise(_row(**fields), amount_unit="major", currency_for=_no_currency).created_at

    assert created(created_at="2026-03-01T10:00:00Z") == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert created(created_at="2026-03-01T10:00:00") == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert created(created_at="2026-03-01T12:00:00+02:00") == datetime(2026, 3, 1, 10, tzinfo=UTC)
    no_time = created(created_at=None, usage_end_time="2026-03-01T10:00:00Z")
    assert no_time == datetime(2026, 3, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="r1 has neither created_at"):
        created(created_at=None)


def test_rows_without_id_get_a_stable_synthetic_one() -> None:
    first = normalise(_row(_id=None), amount_unit="major", currency_for=_no_currency)
    again = normalise(_row(_id=None), amount_unit="major", currency_for=_no_currency)
    other = normalise(
        _row(_id=None, amount=Decimal("10.51")), amount_unit="major", currency_for=_no_currency
    )
    assert first.moesif_id.startswith("sha256:")
    assert first.moesif_id == again.moesif_id != other.moesif_id
    assert normalise(_row(), amount_unit="major", currency_for=_no_currency).moesif_id == "r1"


def test_optional_fields() -> None:
    bare = normalise(_row(), amount_unit="major", currency_for=_no_currency)
    assert (bare.transaction_id, bare.description) == (None, None)
    full = normalise(
        _row(transaction_id="pi_1", description="top-up"),
        amount_unit="major",
        currency_for=_no_currency,
    )
    assert (full.transaction_id, full.description) == ("pi_1", "top-up")


# Syncing into the snapshot (both backends).


@pytest.fixture
def seeded(fake: FakeMoesif) -> FakeMoesif:
    fake.add_subscription("sub_1", "co_1")
    fake.add_subscription("sub_2", "co_2", currency="jpy")
    fake.add_row("co_1", "sub_1", "credit", Decimal("20.00"), T0 + timedelta(hours=1), "pi_1")
    fake.add_row("co_1", "sub_1", "debit", Decimal("5.25"), T0 + timedelta(hours=2), "re_1", "r")
    fake.add_row("co_1", "sub_1", "credit", Decimal("3.00"), T0 + timedelta(hours=3), "wh_9")
    fake.add_row(
        "co_1", "sub_1", "usage", Decimal("0.40"), T0 + timedelta(hours=4), billing_meter_id="m"
    )
    fake.add_row("co_2", "sub_2", "credit", Decimal(1500), T0 + timedelta(hours=5), "pi_2")
    return fake


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as opened:
        yield opened


def _sync(session: Session, client: MoesifClient, **options: Any) -> SyncResult:
    options.setdefault("amount_unit", "major")
    options.setdefault("now", NOW)
    return sync_ledger(session, client, T0, T0 + DAY, **options)


def _stored(session: Session) -> dict[str, LedgerEntry]:
    return {
        entry.transaction_id or entry.moesif_id: entry
        for entry in session.scalars(select(LedgerEntry))
    }


def test_sync_stores_every_row(seeded: FakeMoesif, client: MoesifClient, session: Session) -> None:
    seen: list[int] = []
    result = _sync(session, client, progress=seen.append)
    assert result == SyncResult(rows_seen=5, rows_new=5, rows_updated=0, rows_skipped=0)
    assert seen == [5]
    stored = _stored(session)
    assert stored["pi_1"].amount_minor == 2000
    assert (stored["re_1"].entry_type, stored["re_1"].description) == ("debit", "r")
    assert (stored["pi_2"].currency, stored["pi_2"].amount_minor) == ("jpy", 1500)
    usage = [entry for entry in stored.values() if entry.entry_type == "usage"]
    assert len(usage) == 1
    assert stored["pi_1"].first_seen_at == NOW == stored["pi_1"].last_seen_at
    assert stored["pi_1"].created_at == T0 + timedelta(hours=1)


def test_second_sync_adds_nothing_and_bumps_last_seen(
    seeded: FakeMoesif, client: MoesifClient, session: Session
) -> None:
    _sync(session, client)
    session.commit()
    later = NOW + timedelta(hours=6)
    result = _sync(session, client, now=later)
    assert result == SyncResult(rows_seen=5, rows_new=0, rows_updated=0)
    assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 5
    session.expire_all()
    stored = _stored(session)
    assert stored["pi_1"].first_seen_at == NOW
    assert stored["pi_1"].last_seen_at == later


def test_both_row_forms_normalise_the_same(
    seeded: FakeMoesif, client: MoesifClient, session: Session
) -> None:
    _sync(session, client)
    before = {key: _snapshot(entry) for key, entry in _stored(session).items()}
    seeded.row_form = "signed"
    result = _sync(session, client, now=NOW + DAY)
    assert (result.rows_new, result.rows_updated) == (0, 1)
    session.expire_all()
    assert {key: _snapshot(entry) for key, entry in _stored(session).items()} == before
    assert _stored(session)["re_1"].amount_raw == "-5.25"


def _snapshot(entry: LedgerEntry) -> tuple[object, ...]:
    return (entry.entry_type, entry.amount_minor, entry.currency, entry.created_at)


def test_rows_read_without_transaction_id_keep_the_known_one(
    seeded: FakeMoesif, client: MoesifClient, session: Session
) -> None:
    _sync(session, client)
    seeded.include_transaction_id = False
    seeded.add_row("co_1", "sub_1", "debit", Decimal("1.00"), T0 + timedelta(hours=6), "re_2")
    result = _sync(session, client, now=NOW + DAY)
    assert (result.rows_new, result.rows_updated) == (1, 0)
    session.expire_all()
    transaction_ids = set(session.scalars(select(LedgerEntry.transaction_id)))
    assert transaction_ids == {"pi_1", "re_1", "wh_9", None, "pi_2"}


def test_changed_rows_are_updated_and_counted(
    seeded: FakeMoesif, client: MoesifClient, session: Session
) -> None:
    _sync(session, client)
    result = _sync(session, client, amount_unit="minor", now=NOW + DAY)
    assert (result.rows_new, result.rows_updated) == (0, 4)
    session.expire_all()
    assert _stored(session)["pi_1"].amount_minor == 20


def test_minor_unit_mode(fake: FakeMoesif, client: MoesifClient, session: Session) -> None:
    fake.add_subscription("sub_1", "co_1")
    fake.add_row("co_1", "sub_1", "credit", Decimal(1050), T0, "pi_1")
    _sync(session, client, amount_unit="minor")
    entry = _stored(session)["pi_1"]
    assert (entry.amount_minor, entry.amount_raw, entry.currency) == (1050, "1050", "usd")


def test_missing_row_currency_comes_from_the_subscription(
    fake: FakeMoesif, client: MoesifClient, session: Session
) -> None:
    fake.add_row("co_3", "sub_3", "credit", Decimal(500), T0, "pi_3")
    fake.add_subscription("sub_3", "co_3", currency="jpy")
    _sync(session, client)
    entry = _stored(session)["pi_3"]
    assert (entry.currency, entry.amount_minor) == ("jpy", 500)


def test_companies_filter_and_unreadable_rows(
    seeded: FakeMoesif, client: MoesifClient, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    seeded.add_row("co_2", "sub_2", "credit", Decimal("1." + "1" * 60), T0, "pi_long")
    with caplog.at_level(logging.WARNING, logger="reconcile.db.ledger"):
        result = _sync(session, client, companies=["co_2"])
    assert (result.rows_seen, result.rows_new, result.rows_skipped) == (2, 1, 1)
    assert result.unreadable_ids == {"pi_long"}
    assert set(_stored(session)) == {"pi_2"}
    assert "too many digits" in caplog.text
    assert {exchange.query.get("company_id") for exchange in seeded.exchanges} >= {"co_2"}


def test_large_windows_sync_in_batches(
    fake: FakeMoesif, make_client: Callable[..., MoesifClient], session: Session
) -> None:
    fake.add_subscription("sub_1", "co_1")
    for index in range(1203):
        created = T0 + timedelta(seconds=index * 60)
        fake.add_row("co_1", "sub_1", "credit", Decimal(1), created, f"pi_{index}")
    seen: list[int] = []
    result = _sync(session, make_client(read_cap=5000), progress=seen.append)
    assert result.rows_new == 1203
    assert seen == [500, 1000, 1203]


# Reading the snapshot back.


def test_ledger_frame_rows_and_dtypes(
    seeded: FakeMoesif, client: MoesifClient, session: Session
) -> None:
    seeded.add_row("co_1", "sub_1", "credit", Decimal(9), T0 - timedelta(days=3), "pi_old")
    seeded.add_row("co_1", "sub_1", "credit", Decimal(8), T0 - timedelta(days=3), "pi_other")
    sync_ledger(session, client, T0 - 5 * DAY, T0 + DAY, amount_unit="major", now=NOW)
    ids = ["pi_old", "pi_1"] + [f"pi_none_{index}" for index in range(1100)]
    frame = ledger_frame(session, T0, T0 + timedelta(hours=5), ids)
    assert list(frame.columns) == LEDGER_COLUMNS
    assert frame["transaction_id"].tolist()[:1] == ["pi_old"]
    assert set(frame["transaction_id"].dropna()) == {"pi_old", "pi_1", "re_1", "wh_9"}
    assert len(frame) == 5
    assert frame["moesif_id"].is_unique
    assert str(frame["created_at"].dtype) == "datetime64[us, UTC]"
    assert frame["amount_minor"].dtype == "int64"
    assert frame["created_at"].is_monotonic_increasing
    credit = frame[frame["transaction_id"] == "pi_1"].iloc[0]
    assert credit["created_at"] == pd.Timestamp(T0 + timedelta(hours=1))
    assert credit["amount_minor"] == 2000


def test_ledger_frame_empty_keeps_dtypes(session: Session) -> None:
    frame = ledger_frame(session, T0, T0 + DAY)
    assert frame.empty
    assert list(frame.columns) == LEDGER_COLUMNS
    assert str(frame["created_at"].dtype) == "datetime64[us, UTC]"
    assert frame["amount_minor"].dtype == "int64"


# Rows the job cannot interpret: kept as received, reported unreadable, never a stop.

_GOOD_TIME = '"created_at": "2026-03-01T12:00:00.000Z"'


@pytest.mark.parametrize(
    ("json_text", "reason"),
    [
        ('{"_id": "bad", "type": "credit", "amount": 1e50, ' + _GOOD_TIME + "}", "range"),
        ('{"_id": "bad", "type": "credit", "amount": "1e50", ' + _GOOD_TIME + "}", "range"),
        ('{"_id": "bad", "type": "credit", "amount": NaN, ' + _GOOD_TIME + "}", "non-finite"),
        ('{"_id": "bad", "type": "credit", "amount": Infinity, ' + _GOOD_TIME + "}", "finite"),
        ('{"_id": "bad", "type": "credit", "amount": "ten", ' + _GOOD_TIME + "}", "not a number"),
        ('{"_id": "bad", "type": "credit", "amount": 1e13, ' + _GOOD_TIME + "}", "12 digits"),
        ('{"_id": "bad", "type": "credit", "amount": 5}', "neither created_at"),
        (
            '{"_id": "bad", "type": "credit", "amount": 5, "created_at": "yesterday"}',
            "not ISO 8601",
        ),
        (
            '{"_id": "bad", "type": "credit", "amount": 5, "description": "a\\u0000b", '
            + _GOOD_TIME
            + "}",
            "NUL byte",
        ),
        (
            '{"_id": "bad", "type": "credit", "amount": 5, "company_id": "co\\ud800", '
            + _GOOD_TIME
            + "}",
            "not valid Unicode",
        ),
    ],
    ids=[
        "1e50",
        "1e50-text",
        "nan",
        "infinity",
        "words",
        "13-digits",
        "no-time",
        "bad-time",
        "nul",
        "surrogate",
    ],
)
def test_an_unreadable_row_is_kept_as_received_and_reported(
    seeded: FakeMoesif, client: MoesifClient, session: Session, json_text: str, reason: str
) -> None:
    seeded.add_raw_row(json_text.replace('"_id": "bad"', '"_id": "bad", "transaction_id": "pi_x"'))
    result = _sync(session, client)
    session.commit()
    assert (result.rows_seen, result.rows_new, result.rows_skipped) == (6, 5, 1)
    assert result.unreadable_ids == {"pi_x"}
    [found] = result.unreadable
    assert (found.source, found.object_id, found.transaction_id) == ("moesif", "bad", "pi_x")
    assert reason in found.reason
    kept = session.scalars(select(UnreadableLedgerRow)).one()
    assert (kept.moesif_id, kept.transaction_id) == ("bad", "pi_x")
    assert json.loads(kept.raw_json)["_id"] == "bad"
    assert kept.raw_json.isascii()
    assert set(_stored(session)) == {"pi_1", "re_1", "wh_9", "pi_2"} | {
        entry.moesif_id
        for entry in session.scalars(select(LedgerEntry))
        if not entry.transaction_id
    }
    again = _sync(session, client, now=NOW + DAY)
    session.commit()
    assert again.rows_skipped == 1
    kept = session.scalars(select(UnreadableLedgerRow)).one()
    assert kept.last_seen_at == NOW + DAY
    assert kept.first_seen_at == NOW


def test_any_length_and_odd_currencies_are_stored(
    fake: FakeMoesif, client: MoesifClient, session: Session
) -> None:
    long_id = "x" * 1500
    fake.add_raw_row(
        dump_json(
            {
                "_id": long_id,
                "transaction_id": "pi_" + "y" * 700,
                "company_id": "c" * 800,
                "subscription_id": "s" * 800,
                "currency": "dollars",
                "type": "credit",
                "amount": Decimal("10.50"),
                "created_at": "2026-03-01T12:00:00Z",
                "description": "ünïcode ✓",
            }
        )
    )
    result = _sync(session, client)
    session.commit()
    assert (result.rows_new, result.rows_skipped) == (1, 0)
    stored = session.scalars(select(LedgerEntry)).one()
    assert (stored.moesif_id, len(stored.company_id or ""), stored.currency) == (
        long_id,
        800,
        "usd",
    )
    assert stored.description == "ünïcode ✓"


# Rows a read leaves out (contract section 5: absence only from complete reads).


def _targeted(fake: FakeMoesif) -> list[dict[str, str]]:
    return [e.query for e in fake.exchanges if e.query.get("company_id") is not None]


def test_a_row_left_out_once_is_found_by_its_targeted_read_and_kept(
    seeded: FakeMoesif, client: MoesifClient, session: Session
) -> None:
    _sync(session, client)
    session.commit()
    seeded.omit("pi_1")
    later = NOW + timedelta(hours=6)
    result = _sync(session, client, now=later)
    assert result.gone == ()
    assert _targeted(seeded) == [
        {"from": "2026-03-01T00:59:00Z", "to": "2026-03-01T01:01:00Z", "company_id": "co_1"}
    ]
    session.expire_all()
    stored = _stored(session)
    assert stored["pi_1"].gone_at is None
    assert stored["pi_1"].last_seen_at == later


def test_a_row_no_read_returns_is_marked_gone_after_its_targeted_read(
    seeded: FakeMoesif, client: MoesifClient, session: Session
) -> None:
    _sync(session, client)
    session.commit()
    seeded.omit("pi_1", "wh_9", reads=None)
    later = NOW + timedelta(hours=6)
    result = _sync(session, client, now=later)
    session.expire_all()
    stored = _stored(session)
    assert result.gone == tuple(sorted((stored["pi_1"].moesif_id, stored["wh_9"].moesif_id)))
    assert [query["company_id"] for query in _targeted(seeded)] == ["co_1", "co_1"]
    assert stored["pi_1"].gone_at == later
    assert stored["pi_1"].last_seen_at == NOW
    assert stored["re_1"].gone_at is None


def test_a_read_still_at_the_cap_in_one_second_marks_nothing_gone(
    seeded: FakeMoesif, make_client: Callable[..., MoesifClient], session: Session
) -> None:
    _sync(session, make_client())
    session.commit()
    seeded.omit("pi_1", reads=None)
    for _ in range(3):
        seeded.add_row("co_1", "sub_1", "credit", Decimal(1), T0 + timedelta(hours=1), "pi_x")
    with pytest.raises(MoesifReadCut):
        # four rows share one second: that window stays at the cap of 3, so the read fails
        _sync(session, make_client(read_cap=3))
    session.rollback()
    assert all(entry.gone_at is None for entry in _stored(session).values())
