"""Statements read from a real snapshot tie out to the cent in USD, EUR, JPY and KWD."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from reconcile.db.models import ExpectedRow, LedgerEntry, MoesifSubscription, Posting
from reconcile.domain.money import exponent
from reconcile.operator.statement import StatementRequest, csv_rows, read_statement
from reconcile.rules.statement import COLUMNS
from tests.operator.conftest import add_state

SINCE = datetime(2026, 3, 1, tzinfo=UTC)
UNTIL = datetime(2026, 4, 1, tzinfo=UTC)
CURRENCIES = ("usd", "eur", "jpy", "kwd")
STRIPE = {  # source: (entry type, statement kind)
    "topup": ("credit", "top_up"),
    "refund": ("debit", "refund"),
    "dispute": ("debit", "dispute"),
    "dispute_reversal": ("credit", "dispute_reinstated"),
}
OWN = {"credit": "manual_credit", "debit": "manual_debit", "promotion": "promotion"}
_ids = itertools.count()

moments = st.integers(0, int((UNTIL - SINCE).total_seconds()) - 1).map(
    lambda s: SINCE + timedelta(seconds=s)
)
before = st.integers(1, 10**7).map(lambda s: SINCE - timedelta(seconds=s))
sizes = st.integers(1, 10**9)


@st.composite
def histories(draw: st.DrawFn):
    """Rows before the window, Stripe movements in it (recorded, lost, or posted), own rows."""
    currency = draw(st.sampled_from(CURRENCIES))
    earlier = draw(st.lists(st.tuples(st.sampled_from(("credit", "usage")), sizes, before)))
    stripe = draw(
        st.lists(
            st.tuples(
                st.sampled_from(sorted(STRIPE)),
                sizes,
                moments,
                st.sampled_from(("recorded", "recorded", "lost", "posted")),
            ),
            max_size=12,
        )
    )
    own = draw(st.lists(st.tuples(st.sampled_from(sorted(OWN)), sizes, moments), max_size=5))
    usage = draw(st.lists(st.tuples(st.integers(1, 10**6), moments), max_size=8))
    return currency, earlier, stripe, own, usage


def _row(sub: str, currency: str, entry_type: str, amount: int, at: datetime, tid=None):
    n = next(_ids)
    return LedgerEntry(
        moesif_id=f"mr_{n}",
        transaction_id=tid,
        entry_type=entry_type,
        amount_minor=amount,
        amount_raw=str(amount),
        currency=currency,
        company_id=sub.removeprefix("sub_"),
        subscription_id=sub,
        created_at=at,
        first_seen_at=UNTIL,
        last_seen_at=UNTIL,
    )


def _store(session: Session, history) -> tuple[str, str, int, dict[str, tuple[int, str]]]:
    """Store a history; return its company, currency, Moesif's balance and what was lost."""
    currency, earlier, stripe, own, usage = history
    n = next(_ids)
    company, sub = f"co{n}", f"sub_co{n}"
    session.add(
        MoesifSubscription(
            subscription_id=sub, currency=currency, company_id=company, fetched_at=UNTIL
        )
    )
    sign = {"credit": 1, "promotion": 1, "debit": -1, "usage": -1}
    balance = 0
    for entry_type, amount, at in earlier:
        session.add(_row(sub, currency, entry_type, amount, at))
        balance += sign[entry_type] * amount
    lost: dict[str, tuple[int, str]] = {}
    for k, (source, amount, at, fate) in enumerate(stripe):
        entry_type, _ = STRIPE[source]
        tid = f"pi_{n}_{k}"
        session.add(
            ExpectedRow(
                transaction_id=tid,
                source=source,
                entry_type=entry_type,
                amount_minor=amount,
                currency=currency,
                created_at=at,
                stripe_object_id=f"obj_{n}_{k}",
                topup_id=tid,
                company_id=company,
                subscription_id=sub,
                first_seen_run_id="r1",
                last_seen_run_id="r1",
                updated_at=UNTIL,
            )
        )
        if fate == "recorded":
            session.add(_row(sub, currency, entry_type, amount, at, tid))
        elif fate == "posted":  # Moesif confirmed it; no report shows it yet
            session.add(
                Posting(
                    transaction_id=tid,
                    origin="run:r1",
                    company_id=company,
                    subscription_id=sub,
                    entry_type=entry_type,
                    amount_minor=amount,
                    currency=currency,
                    amount_sent=str(amount),
                    description=f"reconcile: {entry_type} {tid} for Stripe {tid}",
                    status="confirmed",
                    created_at=at,
                    updated_at=at,
                    confirmed_at=at,
                )
            )
        else:
            state = add_state(
                session,
                category="missing_in_moesif",
                transaction_id=tid,
                moesif_id=None,
                company_id=company,
                subscription_id=sub,
            )
            lost[tid] = (sign[entry_type] * amount, state.finding_id)
            continue
        balance += sign[entry_type] * amount
    for entry_type, amount, at in own:
        session.add(_row(sub, currency, entry_type, amount, at))
        balance += sign[entry_type] * amount
    for amount, at in usage:
        session.add(_row(sub, currency, "usage", amount, at))
        balance -= amount
    session.flush()
    return company, currency, balance, lost


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(histories())
def test_statements_of_generated_histories_tie_out_to_the_cent(
    sessions: sessionmaker[Session], history
) -> None:
    with sessions() as session:
        company, currency, balance, lost = _store(session, history)
        request = StatementRequest(company_id=company, since=SINCE)
        _, statement = read_statement(session, request, UNTIL, lambda _s, _c: balance)
        session.rollback()

    rows = [dict(zip(COLUMNS, row, strict=True)) for row in csv_rows(statement)]
    places = exponent(currency)
    assert {row["currency"] for row in rows} == {currency.upper()}
    assert rows[0]["kind"] == "opening"
    running = Decimal(rows[0]["balance_after"])
    for row in rows[1:-1]:
        assert -Decimal(row["amount"]).as_tuple().exponent == places
        running += Decimal(row["amount"])
        assert Decimal(row["balance_after"]) == running
    # the statement shows what the customer is owed: Moesif's balance plus what it lacks
    owed = balance + sum(amount for amount, _ in lost.values())
    assert running == Decimal(owed).scaleb(-places)
    assert rows[-1]["kind"] == "closing"
    assert Decimal(rows[-1]["balance_after"]) == Decimal(balance).scaleb(-places)

    tie = statement.tie_out
    assert tie.ties_out == (not lost)
    assert {d.subject: (d.amount, d.finding_id) for d in tie.differences} == lost
    for tid, (_, finding) in lost.items():
        (line,) = [row for row in rows if row["transaction_id"] == tid]
        assert line["finding_id"] == finding


def test_a_hostile_company_id_stays_in_the_report_directory(tmp_path) -> None:
    from reconcile.operator.statement import statement_path

    path = statement_path(tmp_path, "../../etc/=cmd|x", "20261201T020000Z-abcdef", "csv")
    assert path.parent == tmp_path
    assert path.name == "statement-_.._etc__cmd_x-20261201T020000Z-abcdef.csv"


def test_own_rows_take_the_contracts_kinds_and_signs() -> None:
    from reconcile.db.statements import StoredRow
    from reconcile.operator.statement import split_ledger

    def row(moesif_id, entry_type, amount, tid=None):
        return StoredRow(moesif_id, tid, entry_type, amount, "usd", SINCE, None)

    ledger, usage = split_ledger(
        [
            row("a", "credit", 100),
            row("b", "debit", 40),
            row("c", "promotion", 5),
            row("d", "adjustment", 7),
            row("e", "credit", 9, "corr_F-1"),
            row("f", "usage", 3),
            row("g", "usage", 4),
            row("h", "credit", 11, "random-id"),
        ],
        {"h": "pi_paired"},
    )
    assert [(m.kind, m.amount, m.transaction_id) for m in ledger] == [
        ("manual_credit", 100, None),
        ("manual_debit", -40, None),
        ("promotion", 5, None),
        ("correction", 7, None),
        ("correction", 9, "corr_F-1"),
        ("manual_credit", 11, "pi_paired"),
    ]
    assert usage == {SINCE.date(): -7}
