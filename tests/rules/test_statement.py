"""A customer's statement ties out to the cent, and names each difference (contract section 11)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from reconcile.domain.money import exponent
from reconcile.rules.statement import (
    CLOSING,
    COLUMNS,
    KINDS,
    LEDGER,
    OPENING,
    REPORTED,
    LedgerMovement,
    StripeMovement,
    build_statement,
    statement_rows,
    tie_out_lines,
)

SINCE = datetime(2026, 3, 1, tzinfo=UTC)
UNTIL = datetime(2026, 4, 1, tzinfo=UTC)
CURRENCIES = ("usd", "eur", "jpy", "kwd")
SIGNS = {"top_up": 1, "refund": -1, "dispute": -1, "dispute_reinstated": 1}
OWN_SIGNS = {"manual_credit": 1, "manual_debit": -1, "promotion": 1, "correction": -1}
FATES = ("correct", "correct", "missing", "amount", "twice")

moments = st.integers(0, int((UNTIL - SINCE).total_seconds()) - 1).map(
    lambda s: SINCE + timedelta(seconds=s)
)
sizes = st.integers(1, 10**9)


@st.composite
def histories(draw: st.DrawFn):
    """A subscription's month: Stripe movements and the rows they produced (or did not)."""
    currency = draw(st.sampled_from(CURRENCIES))
    stripe, ledger, findings, drifted = [], [], {}, set()
    for n in range(draw(st.integers(0, 15))):
        kind = draw(st.sampled_from(sorted(SIGNS)))
        amount, at = SIGNS[kind] * draw(sizes), draw(moments)
        tid = f"txn_{n}"
        stripe.append(StripeMovement(kind, f"obj_{n}", tid, amount, at))
        fate = draw(st.sampled_from(FATES))
        recorded = {"correct": [amount], "missing": [], "twice": [amount, amount]}.get(
            fate, [amount + draw(st.integers(1, 999))]
        )
        for copy, value in enumerate(recorded):
            ledger.append(LedgerMovement(kind, f"mr_{n}_{copy}", tid, value, at))
        if fate != "correct":
            drifted.add(tid)
            if draw(st.booleans()):
                findings[tid] = f"fnd_{n}"
    for n in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(sorted(OWN_SIGNS)))
        amount = OWN_SIGNS[kind] * draw(sizes)
        ledger.append(LedgerMovement(kind, f"own_{n}", None, amount, draw(moments)))
    days = st.dates(SINCE.date(), (UNTIL - timedelta(days=1)).date())
    usage = draw(st.dictionaries(days, st.integers(-(10**7), -1), max_size=10))
    return currency, stripe, ledger, usage, findings, drifted


@given(histories(), st.integers(0, 10**10), st.integers(-500, 500), st.integers(-500, 500))
def test_statements_of_generated_histories_tie_out_to_the_cent(
    history, opening, ledger_gap, reported_gap
) -> None:
    currency, stripe, ledger, usage, findings, drifted = history
    closing = opening + sum(row.amount for row in ledger) + sum(usage.values()) - ledger_gap
    reported = closing - reported_gap
    statement = build_statement(
        currency=currency,
        since=SINCE,
        until=UNTIL,
        opening=opening,
        stripe=stripe,
        ledger=ledger,
        usage=usage,
        findings=findings,
        closing=closing,
        reported=reported,
        balance_finding_id="fnd_break",
    )
    tie = statement.tie_out

    rows = [dict(zip(COLUMNS, row, strict=True)) for row in statement_rows(statement)]
    assert (rows[0]["kind"], rows[-1]["kind"]) == (OPENING, CLOSING)
    assert all(row["kind"] in KINDS and row["currency"] == currency.upper() for row in rows)
    assert [row["date"] for row in rows] == sorted(row["date"] for row in rows)
    places = exponent(currency)
    running = Decimal(rows[0]["balance_after"])
    for row in rows[1:-1]:
        assert -Decimal(row["amount"]).as_tuple().exponent == places
        running += Decimal(row["amount"])
        assert Decimal(row["balance_after"]) == running
    assert running == Decimal(tie.expected_closing).scaleb(-places)
    assert Decimal(rows[-1]["balance_after"]) == Decimal(closing).scaleb(-places)

    movements = {d.subject: d for d in tie.differences if d.subject not in (LEDGER, REPORTED)}
    assert movements.keys() == drifted
    assert all(d.finding_id == findings.get(tid) for tid, d in movements.items())
    assert tie.expected_closing - tie.closing == sum(
        d.amount for d in tie.differences if d.subject != REPORTED
    )
    assert {d.subject: d.amount for d in tie.differences}.get(LEDGER, 0) == ledger_gap
    assert {d.subject: d.amount for d in tie.differences}.get(REPORTED, 0) == reported_gap
    assert tie.ties_out == (not drifted and ledger_gap == 0 and reported_gap == 0)


@given(histories(), st.integers(0, 10**10))
def test_a_history_moesif_recorded_faithfully_ties_out(history, opening) -> None:
    currency, stripe, _, usage, _, _ = history
    ledger = [
        LedgerMovement(m.kind, f"mr_{m.transaction_id}", m.transaction_id, m.amount, m.at)
        for m in stripe
    ]
    closing = opening + sum(m.amount for m in stripe) + sum(usage.values())
    statement = build_statement(
        currency=currency,
        since=SINCE,
        until=UNTIL,
        opening=opening,
        stripe=stripe,
        ledger=ledger,
        usage=usage,
        findings={},
        closing=closing,
        reported=closing,
    )
    assert statement.tie_out.ties_out
    assert statement.tie_out.expected_closing == closing
    assert statement.lines[-2].balance_after == closing


def _at(day: int, hour: int) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def test_a_statement_with_a_missing_credit_names_its_finding() -> None:
    stripe = [
        StripeMovement("top_up", "pi_1", "pi_1", 5_000, _at(2, 9)),
        StripeMovement("top_up", "pi_2", "pi_2", 2_000, _at(3, 9)),
        StripeMovement("refund", "re_1", "re_1", -1_000, _at(4, 9)),
    ]
    ledger = [
        LedgerMovement("top_up", "mr_1", "pi_1", 5_000, _at(2, 9)),
        LedgerMovement("refund", "mr_2", "re_1", -1_000, _at(4, 9)),
        LedgerMovement("promotion", "mr_3", None, 500, _at(2, 10), "Welcome credit"),
    ]
    statement = build_statement(
        currency="usd",
        since=SINCE,
        until=UNTIL,
        opening=1_000,
        stripe=stripe,
        ledger=ledger,
        usage={date(2026, 3, 2): -750},
        findings={"pi_2": "fnd_missing"},
        closing=4_750,
        reported=4_750,
    )
    assert statement_rows(statement) == [
        ("2026-03-01", "opening", "", "", "Opening balance", "", "USD", "10.00", ""),
        ("2026-03-02", "top_up", "pi_1", "pi_1", "Top-up", "50.00", "USD", "60.00", ""),
        ("2026-03-02", "promotion", "", "", "Welcome credit", "5.00", "USD", "65.00", ""),
        ("2026-03-02", "usage", "", "", "Usage on 2026-03-02", "-7.50", "USD", "57.50", ""),
        ("2026-03-03", "top_up", "pi_2", "pi_2", "Top-up", "20.00", "USD", "77.50", "fnd_missing"),
        ("2026-03-04", "refund", "re_1", "re_1", "Refund", "-10.00", "USD", "67.50", ""),
        ("2026-04-01", "closing", "", "", "Closing balance", "", "USD", "47.50", ""),
    ]
    assert not statement.tie_out.ties_out
    assert tie_out_lines(statement) == [
        "opening 10.00 USD + movements 57.50 USD = 67.50 USD; closing 47.50 USD; "
        "Moesif reports 47.50 USD",
        "20.00 USD: the top-up pi_2 of 20.00 USD is not in the ledger (fnd_missing)",
    ]


def test_a_movement_recorded_twice_and_a_reported_gap_in_yen() -> None:
    stripe = [StripeMovement("top_up", "pi_1", "pi_1", 1_000, _at(5, 9))]
    ledger = [
        LedgerMovement("top_up", "mr_1", "pi_1", 1_000, _at(5, 9)),
        LedgerMovement("top_up", "mr_2", "pi_1", 1_000, _at(5, 10)),
    ]
    statement = build_statement(
        currency="jpy",
        since=SINCE,
        until=UNTIL,
        opening=0,
        stripe=stripe,
        ledger=ledger,
        usage={},
        findings={"pi_1": "fnd_dup"},
        closing=2_000,
        reported=1_900,
        balance_finding_id="fnd_break",
    )
    assert [(line.kind, line.amount, line.ledger_amount) for line in statement.lines[1:-1]] == [
        ("top_up", 1_000, 1_000),
        ("top_up", 0, 1_000),
    ]
    assert statement.lines[-1].finding_id == "fnd_break"
    assert tie_out_lines(statement)[1:] == [
        "-1000 JPY: the ledger records the top-up pi_1 again (1000 JPY) (fnd_dup)",
        "100 JPY: the statement closes at 2000 JPY but Moesif reports 1900 JPY (fnd_break)",
    ]


def test_an_amount_recorded_differently_in_three_decimals() -> None:
    stripe = [StripeMovement("dispute", "dp_1", "txn_1", -1_250, _at(6, 9))]
    ledger = [LedgerMovement("dispute", "mr_1", "txn_1", -1_000, _at(6, 9))]
    statement = build_statement(
        currency="kwd",
        since=SINCE,
        until=UNTIL,
        opening=5_000,
        stripe=stripe,
        ledger=ledger,
        usage={},
        findings={},
        closing=4_000,
        reported=None,
    )
    (difference,) = statement.tie_out.differences
    assert (difference.subject, difference.amount, difference.finding_id) == ("txn_1", -250, None)
    assert difference.detail == "the ledger records -1.000 KWD for the dispute dp_1 of -1.250 KWD"


def test_a_manual_credit_under_review_names_its_finding_and_still_ties_out() -> None:
    ledger = [
        LedgerMovement("manual_credit", "mr_goodwill", None, 2_000, _at(2, 9), "By support"),
        LedgerMovement("promotion", "mr_promo", None, 500, _at(3, 9)),
    ]
    statement = build_statement(
        currency="usd",
        since=SINCE,
        until=UNTIL,
        opening=0,
        stripe=[],
        ledger=ledger,
        usage={},
        findings={},
        closing=2_500,
        reported=2_500,
        row_findings={"mr_goodwill": "fnd_stripe", "mr_elsewhere": "fnd_other"},
    )
    assert [(row[1], row[5], row[8]) for row in statement_rows(statement)] == [
        ("opening", "", ""),
        ("manual_credit", "20.00", "fnd_stripe"),
        ("promotion", "5.00", ""),
        ("closing", "", ""),
    ]
    assert statement.tie_out.ties_out
