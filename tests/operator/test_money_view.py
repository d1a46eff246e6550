"""The console's money view as plain values: units, signs, totals apart, balance rows."""

from __future__ import annotations

from decimal import Decimal

from reconcile.domain.values import Entry
from reconcile.operator.console.money_view import (
    balance_view,
    finding_money,
    headline,
    shown,
    signed_text,
)
from reconcile.subscriptions import available_balance_minor


def _entry(kind: str, amount: int, currency: str = "usd") -> Entry:
    return Entry("t", "c", "s", "debit" if kind == "debit" else "credit", amount, currency, "d")


def test_amounts_read_in_major_units_with_their_currency() -> None:
    assert shown(105000, "usd") == "1,050.00 USD"
    assert shown(5000, "JPY") == "5,000 JPY"
    assert shown(None, "usd") == ""
    assert shown(1050, None) == "1050 (minor units, currency unknown)"
    assert signed_text(2000, "usd") == "+20.00 USD"
    assert signed_text(-103950, "usd") == "-1,039.50 USD"
    assert signed_text(0, "usd") == "0.00 USD"


def test_a_finding_shows_both_sides_alike_and_what_the_difference_means() -> None:
    money = finding_money(1050, 105000, -103950, "usd")
    assert (money.stripe, money.moesif, money.delta) == (
        "10.50 USD",
        "1,050.00 USD",
        "-1,039.50 USD",
    )
    assert money.meaning == "Moesif holds 1,039.50 USD too much"
    owed = finding_money(2500, None, 2500, "usd")
    assert (owed.moesif, owed.meaning) == ("none", "the customer is owed 25.00 USD of credit")
    assert finding_money(None, None, None, None).delta == "unknown"


def test_headline_keeps_currencies_apart_and_signs_what_was_posted() -> None:
    lines = headline(
        [("usd", 2500, True), ("usd", -2000, False), ("USD", 700, False), ("jpy", 5000, False)]
        + [("xyz", 100, True), (None, 5, False), ("usd", None, True)],
        [_entry("credit", 3700), _entry("debit", 500), _entry("credit", 5000, "jpy")],
    )
    assert [
        (x.currency, x.owed_to_customers, x.over_credited, x.posted, x.blocked_owed) for x in lines
    ] == [
        ("JPY", "+5,000 JPY", "0 JPY", "+5,000 JPY", 0),
        ("USD", "+32.00 USD", "-20.00 USD", "+32.00 USD", 1),
    ]
    assert headline([], []) == []


def test_balance_rows_are_marked_ordered_per_currency_and_mismatches_apart() -> None:
    def row(sub: str, currency: str, delta: str, available: str) -> dict[str, str]:
        return {
            "company_id": sub.removeprefix("sub_"),
            "subscription_id": sub,
            "currency": currency,
            "delta": delta,
            "available_balance": available,
            "current_balance": available,
            "pending_activity": "0",
        }

    view = balance_view(
        [
            row("sub_clean", "usd", "0.00", "0"),
            row("sub_small", "usd", "5.00", "3.00"),
            row("sub_over", "usd", "'-100.00", "100.00"),
            row("sub_yen", "jpy", "5000", "10"),
            row("sub_blocked", "usd", "1.00", "0.00"),
            row("sub_eur", "eur", "30.00", "0"),
            row("sub_spent", "usd", "'-2.00", "-1.00"),
            {**row("sub_gbp", "gbp", "4.00", "9.00"), "subscription_currency": "usd"},
        ],
        {"sub_eur": "usd", "sub_yen": "jpy", "sub_small": None},
    )
    assert [(r["subscription_id"], r["blocked"], r["owed"]) for r in view.rows] == [
        ("sub_spent", "blocked", "over-credited"),  # blocked first, owed or not (section 10)
        ("sub_blocked", "blocked", "owed"),
        ("sub_yen", "", "owed"),
        ("sub_over", "", "over-credited"),
        ("sub_small", "", "owed"),
        ("sub_clean", "blocked", ""),
    ]
    assert view.rows[3]["delta"] == "-100.00"
    assert (view.rows[2]["delta"], view.rows[1]["delta"]) == ("+5,000", "+1.00")
    apart, named = view.currency_mismatch
    assert (apart["subscription_id"], apart["subscription_currency"], apart["owed"]) == (
        "sub_eur",
        "USD",
        "owed",
    )
    assert (apart["available_balance"], apart["blocked"]) == ("", "")
    # The CSV's own subscription_currency tells a mismatch the snapshot's currencies do not.
    assert (named["subscription_id"], named["available_balance"]) == ("sub_gbp", "")


def test_moesif_available_balance_is_kept_in_minor_units() -> None:
    assert available_balance_minor(Decimal("12.50"), "usd", "major") == 1250
    assert available_balance_minor(Decimal("-3.005"), "usd", "major") == -300
    assert available_balance_minor(Decimal("5000"), "jpy", "major") == 5000
    assert available_balance_minor(Decimal("1250"), "usd", "minor") == 1250
    assert available_balance_minor(Decimal("12.50"), None, "major") is None
    assert available_balance_minor(Decimal("12.50"), "xyz", "major") is None
