"""Moesif's running balance: breaks are found exactly where they are (contract section 11)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from reconcile.rules.balance_chain import (
    CARRIED,
    CHANGES,
    REPORTED,
    Balance,
    BalanceRow,
    balance_breaks,
    read_again_first,
)

START = datetime(2026, 3, 1, tzinfo=UTC)
CURRENCIES = ("usd", "eur", "jpy", "kwd")
amounts = st.integers(min_value=-(10**7), max_value=10**7)
gaps = st.integers(min_value=-(10**6), max_value=10**6).filter(bool)


def _balance(current: int, pending: int = 0) -> Balance:
    return Balance(current=current, pending=pending, available=current + pending)


def _shift(balance: Balance | None, by: int) -> Balance | None:
    return None if balance is None else _balance(balance.current + by, balance.pending)


def _row(
    moesif_id: str, sequence: int | None, beginning: int, changes: tuple[int, ...], currency: str
) -> BalanceRow:
    return BalanceRow(
        moesif_id=moesif_id,
        sequence_id=sequence,
        created_at=START + timedelta(hours=sequence or 0),
        currency=currency,
        beginning=_balance(beginning, pending=-7),
        ending=_balance(beginning + sum(changes), pending=-7),
        changes=changes,
    )


@st.composite
def ledgers(draw: st.DrawFn) -> tuple[list[BalanceRow], int, str]:
    """A subscription's rows that add up (usage burns included), and the balance it reports."""
    currency = draw(st.sampled_from(CURRENCIES))
    count = draw(st.integers(min_value=1, max_value=12))
    sequences = sorted(draw(st.sets(st.integers(0, 10**6), min_size=count, max_size=count)))
    balance = draw(st.integers(min_value=0, max_value=10**8))
    rows = []
    for position, sequence in enumerate(sequences):
        usage = draw(st.booleans())
        changes = tuple(
            draw(st.lists(amounts.map(lambda a: -abs(a)) if usage else amounts, max_size=4))
        )
        row = _row(f"mr_{position}", sequence, balance, changes, currency)
        rows.append(replace(row, created_at=START + timedelta(minutes=draw(st.integers(0, 99)))))
        balance += sum(changes)
    return rows, balance, currency


def _with_unchained(rows: list[BalanceRow], extra: int) -> list[BalanceRow]:
    unchained = [
        BalanceRow(f"plain_{n}", None if n % 2 else n, START, rows[0].currency, None, None)
        for n in range(extra)
    ]
    return rows + unchained


@given(ledgers(), st.integers(0, 3), st.randoms(use_true_random=False))
def test_a_ledger_that_adds_up_has_no_breaks(ledger, extra, random) -> None:
    rows, reported, _ = ledger
    given_rows = _with_unchained(rows, extra)
    random.shuffle(given_rows)
    check = balance_breaks(given_rows, reported)
    assert check.breaks == ()
    assert (check.checked, check.skipped) == (len(rows), extra)


@given(ledgers(), st.data())
def test_injected_breaks_are_found_exactly_where_they_are(ledger, data) -> None:
    rows, reported, currency = ledger
    indices = st.integers(0, len(rows) - 1)
    carried = data.draw(st.dictionaries(indices.filter(bool), gaps), label="carried")
    changed = data.draw(st.dictionaries(indices, gaps), label="changes")
    off = data.draw(st.one_of(st.none(), gaps), label="reported")
    expected = set()
    for index, gap in carried.items():
        for later in range(index, len(rows)):
            row = rows[later]
            rows[later] = replace(
                row, beginning=_shift(row.beginning, gap), ending=_shift(row.ending, gap)
            )
        reported += gap
        expected.add((CARRIED, f"mr_{index - 1}", f"mr_{index}", gap))
    for index, gap in changed.items():
        changes = rows[index].changes or (0,)
        rows[index] = replace(rows[index], changes=(changes[0] + gap, *changes[1:]))
        expected.add((CHANGES, f"mr_{index}", f"mr_{index}", -gap))
    if off is not None:
        reported += off
        expected.add((REPORTED, f"mr_{len(rows) - 1}", "reported", off))
    given_rows = _with_unchained(rows, 2)
    data.draw(st.randoms(use_true_random=False)).shuffle(given_rows)

    breaks = balance_breaks(given_rows, reported).breaks

    assert {(b.kind, b.earlier_id, b.later_id, b.gap) for b in breaks} == expected
    assert len(breaks) == len(expected)
    assert all(b.currency == currency for b in breaks)
    assert all(b.earlier_id in b.detail for b in breaks)


def test_a_beginning_that_does_not_carry_the_previous_ending_names_both_rows() -> None:
    first = _row("mr_a", 1, 10_000, (-2_500,), "usd")
    second = _row("mr_b", 2, 7_000, (-1_000,), "usd")
    (found,) = balance_breaks([second, first], 6_000).breaks
    assert (found.kind, found.earlier_id, found.later_id, found.gap) == (
        CARRIED,
        "mr_a",
        "mr_b",
        -500,
    )
    assert found.detail == (
        "row mr_b begins at 70.00 USD but row mr_a ended at 75.00 USD: a gap of -5.00 USD"
    )


def test_changes_that_do_not_reach_the_ending_are_a_break_in_three_decimals() -> None:
    row = replace(_row("mr_k", 4, 1_000, (250,), "kwd"), changes=(200,))
    (found,) = balance_breaks([row], None).breaks
    assert (found.kind, found.gap, found.currency) == (CHANGES, 50, "kwd")
    assert "a gap of 0.050 KWD" in found.detail


def test_the_reported_balance_is_compared_with_the_last_ending() -> None:
    rows = [_row("mr_1", 1, 500, (-200,), "jpy"), _row("mr_2", 2, 300, (-300,), "jpy")]
    (found,) = balance_breaks(rows, 100).breaks
    assert (found.kind, found.earlier_id, found.later_id, found.gap) == (
        REPORTED,
        "mr_2",
        REPORTED,
        100,
    )
    assert found.detail == (
        "Moesif reports 100 JPY for the subscription but its last row mr_2 ended at 0 JPY: "
        "a gap of 100 JPY"
    )


def test_no_rows_with_balances_prove_nothing_about_the_reported_balance() -> None:
    plain = BalanceRow("mr_u", 3, START, "usd", None, None, (-40,))
    check = balance_breaks([plain], 999)
    assert (check.breaks, check.checked, check.skipped) == ((), 0, 1)


def test_pending_activity_is_not_chained() -> None:
    first = _row("mr_a", 1, 1_000, (-100,), "eur")
    second = replace(_row("mr_b", 2, 900, (), "eur"), beginning=_balance(900, pending=-300))
    assert balance_breaks([first, second], 900).breaks == ()


def test_a_balance_reported_at_an_earlier_sequence_is_compared_with_that_row() -> None:
    rows = [_row("mr_1", 1, 500, (-200,), "jpy"), _row("mr_2", 2, 300, (-300,), "jpy")]
    assert balance_breaks(rows, 300, reported_at=1).breaks == ()
    assert balance_breaks(rows, 300, reported_at=1).reported

    (found,) = balance_breaks(rows, 400, reported_at=1).breaks
    assert (found.kind, found.earlier_id, found.later_id, found.gap) == (
        REPORTED,
        "mr_1",
        REPORTED,
        100,
    )
    assert found.detail == (
        "Moesif reported 400 JPY for the subscription at sequence 1 but row mr_1 of that "
        "sequence ended at 300 JPY: a gap of 100 JPY"
    )
    (last,) = balance_breaks(rows, 1, reported_at=2).breaks
    assert "its last row mr_2 ended at 0 JPY" in last.detail


def test_a_balance_reported_after_the_rows_the_snapshot_holds_is_not_compared() -> None:
    rows = [_row("mr_1", 1, 500, (-200,), "usd"), _row("mr_2", 2, 300, (-300,), "usd")]
    later = balance_breaks(rows, 12_345, reported_at=3)
    assert (later.breaks, later.reported) == ((), False)
    assert balance_breaks(rows, None, reported_at=2).reported is False


def test_a_disagreement_with_a_balance_read_before_the_rows_is_read_again_first() -> None:
    rows = [_row("mr_1", 1, 500, (-200,), "usd")]
    disagreeing, agreeing = balance_breaks(rows, 299), balance_breaks(rows, 300)
    assert read_again_first(disagreeing, read_after_rows=False)
    assert not read_again_first(disagreeing, read_after_rows=True)
    assert not read_again_first(agreeing, read_after_rows=False)
    carried_only = balance_breaks([rows[0], _row("mr_2", 2, 999, (), "usd")], None)
    assert carried_only.breaks
    assert not read_again_first(carried_only, read_after_rows=False)
