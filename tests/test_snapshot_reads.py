"""Reading the snapshot in bulk: the window, and every row naming one of the given ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from reconcile.db.ledger import ledger_frame, store_ledger_rows
from reconcile.db.subscriptions import keep_currency, kept_currencies
from reconcile.domain.values import LedgerRow
from reconcile.domain.vocab import EntryType

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
