"""The Stripe read against Stripe's own totals and counterparts (contract section 11)."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.domain.money import format_major
from reconcile.rules.control_totals import (
    MovedObject,
    PagedTransaction,
    Totals,
    TransactionRef,
    missing_counterparts,
    summary_totals,
    total_mismatches,
)

CATEGORIES = ("charge", "refund", "dispute", "dispute_reversal", "refund_failure")
CURRENCIES = ("usd", "eur", "jpy", "kwd")


@st.composite
def transactions(draw: st.DrawFn, index: int) -> PagedTransaction:
    category = draw(st.sampled_from(CATEGORIES))
    amount = draw(st.integers(0, 10**9))
    amount = amount if category in {"charge", "dispute_reversal", "refund_failure"} else -amount
    fee = draw(st.integers(0, abs(amount) // 10))
    currency = draw(st.sampled_from(CURRENCIES))
    return PagedTransaction(f"txn_{index}", category, currency, amount, fee, amount - fee)


@st.composite
def pages(draw: st.DrawFn) -> list[PagedTransaction]:
    count = draw(st.integers(1, 40))
    return [draw(transactions(index)) for index in range(count)]


def summary_of(paged: list[PagedTransaction]) -> list[dict[str, str]]:
    """Stripe's summary CSV rows for these transactions, major units, with a total row."""
    sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for moved in paged:
        figures = sums[(moved.reporting_category, moved.currency)]
        for position, value in enumerate((1, moved.amount, -moved.fee, moved.net)):
            figures[position] += value
    rows = [
        {
            "reporting_category": category,
            "currency": currency,
            "count": str(count),
            "gross": format_major(gross, currency),
            "fee": format_major(fee, currency),
            "net": format_major(net, currency),
        }
        for (category, currency), (count, gross, fee, net) in sorted(sums.items())
    ]
    rows.append(
        {"reporting_category": "total", "currency": "usd", "count": "9", "gross": "1.00"}
        | {"fee": "0.00", "net": "1.00"}
    )
    return rows


@given(pages(), st.randoms(use_true_random=False))
def test_a_complete_read_agrees_with_stripes_summary(paged, random) -> None:
    summary = summary_of(paged)
    random.shuffle(paged)
    assert total_mismatches(paged + paged[:3], summary) == []


@given(pages(), st.data())
def test_a_summary_that_differs_by_one_movement_names_its_category(paged, data) -> None:
    position = data.draw(st.integers(0, len(paged) - 1), label="movement")
    dropped = paged[position]
    extra_in_stripe = data.draw(st.booleans(), label="read missed it")
    if extra_in_stripe:
        summary = summary_of(paged)
        read = paged[:position] + paged[position + 1 :]
    else:
        summary = summary_of(paged[:position] + paged[position + 1 :])
        read = paged

    (mismatch,) = total_mismatches(read, summary)

    assert (mismatch.reporting_category, mismatch.currency) == (
        dropped.reporting_category,
        dropped.currency,
    )
    one = 1 if extra_in_stripe else -1
    assert mismatch.reported.count - mismatch.paged.count == one
    assert mismatch.reported.gross - mismatch.paged.gross == one * dropped.amount
    assert dropped.reporting_category in mismatch.detail


def test_only_the_categories_the_run_pages_are_compared() -> None:
    summary = [
        {"reporting_category": "payout", "currency": "usd", "count": "1"}
        | {"gross": "-50.00", "fee": "0.00", "net": "-50.00"}
    ]
    assert total_mismatches([], summary, categories={"charge", "refund"}) == []
    (mismatch,) = total_mismatches([], summary)
    assert mismatch.detail == (
        "payout in USD: the run paged 0 for 0.00 gross, 0.00 net; "
        "Stripe's summary has 1 for -50.00 gross, -50.00 net"
    )


def test_a_count_that_differs_is_a_mismatch_even_when_the_sums_agree() -> None:
    paged = [PagedTransaction("txn_1", "charge", "usd", 0, 0, 0)]
    summary = [
        {"reporting_category": "charge", "currency": "usd", "count": "2"}
        | {"gross": "0.00", "fee": "0.00", "net": "0.00"}
    ]
    (mismatch,) = total_mismatches(paged, summary)
    assert (mismatch.paged.count, mismatch.reported.count) == (1, 2)


def test_summary_figures_are_parsed_exactly_in_each_currencys_units() -> None:
    rows = [
        {"reporting_category": "charge", "currency": "JPY", "count": "2"}
        | {"gross": "1000", "fee": "36", "net": "964"},
        {"reporting_category": "charge", "currency": "kwd", "count": "1"}
        | {"gross": "0.105", "fee": "0", "net": "0.105"},
        {"reporting_category": "charge", "currency": "usd", "count": "3"}
        | {"gross": "0.1", "fee": "0.00", "net": "0.10"},
    ]
    assert summary_totals(rows) == {
        ("charge", "jpy"): Totals(2, 1000, 36, 964),
        ("charge", "kwd"): Totals(1, 105, 0, 105),
        ("charge", "usd"): Totals(3, 10, 0, 10),
    }


@pytest.mark.parametrize(
    ("column", "text"), [("gross", "10.001"), ("net", "ten"), ("count", "1.5"), ("fee", "")]
)
def test_a_summary_figure_that_is_no_exact_amount_is_refused(column: str, text: str) -> None:
    row = {"reporting_category": "charge", "currency": "usd", "count": "1"}
    row |= {"gross": "1.00", "fee": "0.00", "net": "1.00", column: text}
    with pytest.raises(ValueError, match=column):
        summary_totals([row])


def test_each_object_has_its_balance_transaction_and_each_transaction_its_object() -> None:
    moved = [
        MovedObject("pi_ok", "top-up", ("txn_pi_ok",)),
        MovedObject("pi_none", "top-up", ()),
        MovedObject("re_unpaged", "refund", ("txn_re_gone",)),
        MovedObject("dp_1", "dispute", ("txn_dp_withdrawn", "txn_dp_reinstated")),
    ]
    paged = [
        TransactionRef("txn_pi_ok", "ch_ok", "charge"),
        TransactionRef("txn_dp_withdrawn", "dp_1", "adjustment"),
        TransactionRef("txn_dp_reinstated", "dp_1", "adjustment"),
        TransactionRef("txn_orphan", "re_unread", "refund"),
    ]
    found = missing_counterparts(moved, paged)
    assert [(gap.object_id, gap.balance_transaction_id) for gap in found] == [
        ("pi_none", None),
        ("re_unpaged", "txn_re_gone"),
        (None, "txn_orphan"),
    ]
    assert found[0].detail == "the top-up pi_none names no balance transaction"
    assert found[2].detail == (
        "the refund balance transaction txn_orphan (source re_unread) is named by no top-up, "
        "refund or dispute the run read"
    )


@given(st.lists(st.integers(0, 3), min_size=1, max_size=20), st.data())
def test_a_dropped_side_is_found_exactly(bts_per_object, data) -> None:
    moved = [
        MovedObject(f"obj_{n}", "dispute", tuple(f"txn_{n}_{k}" for k in range(count)))
        for n, count in enumerate(bts_per_object)
    ]
    paged = [
        TransactionRef(txn, o.id, "adjustment") for o in moved for txn in o.balance_transaction_ids
    ]
    expected = {(o.id, None) for o in moved if not o.balance_transaction_ids}
    if paged:
        lost = data.draw(st.sampled_from(paged), label="unpaged")
        paged.remove(lost)
        expected.add((lost.source_id, lost.id))
    stray = TransactionRef("txn_stray", None, "charge")
    expected.add((None, "txn_stray"))

    found = missing_counterparts(moved, [*paged, stray])

    assert {(gap.object_id, gap.balance_transaction_id) for gap in found} == expected
    assert len(found) == len(expected)
