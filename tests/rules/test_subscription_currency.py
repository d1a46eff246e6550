"""When a kept subscription currency is used without asking Moesif."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from reconcile.rules.subscription_currency import MAX_AGE, disagrees, kept_are_fresh, kept_is_fresh

NOW = datetime(2026, 11, 24, 2, tzinfo=UTC)


def test_a_kept_currency_is_used_for_a_week() -> None:
    assert kept_is_fresh("jpy", NOW - MAX_AGE + timedelta(minutes=1), now=NOW, expect=None)
    assert not kept_is_fresh("jpy", NOW - MAX_AGE, now=NOW, expect=None)


def test_a_kept_currency_that_disagrees_with_the_payment_is_not_used() -> None:
    assert kept_is_fresh("jpy", NOW, now=NOW, expect="JPY")
    assert not kept_is_fresh("jpy", NOW, now=NOW, expect="usd")
    assert not kept_is_fresh(None, NOW, now=NOW, expect="usd")
    assert kept_is_fresh(None, NOW, now=NOW, expect=None)


def test_disagreement_needs_a_payment_currency() -> None:
    assert not disagrees("jpy", None)
    assert disagrees("jpy", "USD")
    assert not disagrees("usd", "USD")


def test_many_kept_currencies_are_judged_as_each_one_is() -> None:
    cases = [
        (currency, fetched_at, expect)
        for currency in ("jpy", None)
        for fetched_at in (NOW, NOW - MAX_AGE + timedelta(minutes=1), NOW - MAX_AGE, None)
        for expect in ("JPY", "jpy", "usd", None)
    ]
    fresh = kept_are_fresh(
        [currency for currency, _, _ in cases],
        pd.Series([at for _, at, _ in cases], dtype="datetime64[us, UTC]"),
        now=NOW,
        expect=[expect for _, _, expect in cases],
    )
    assert fresh.tolist() == [
        at is not None and kept_is_fresh(currency, at, now=NOW, expect=expect)
        for currency, at, expect in cases
    ]
    assert 0 < fresh.sum() < len(cases)
