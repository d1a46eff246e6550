"""The report's delta: the correction a subscription's balance needs (contract section 7)."""

from __future__ import annotations

import pytest

from reconcile.rules.delta import correction


@pytest.mark.parametrize(
    ("category", "entry_type", "stripe", "moesif", "expected"),
    [
        ("missing_in_moesif", "credit", 500, None, 500),
        ("missing_in_moesif", "debit", 500, None, -500),
        ("amount_mismatch", "credit", 500, 800, -300),
        ("amount_mismatch", "debit", 500, 800, 300),
        ("duplicate_in_moesif", "credit", 500, 500, -500),
        ("duplicate_in_moesif", "debit", 500, 500, 500),
        ("missing_in_stripe", "credit", None, 999, -999),
        ("missing_in_stripe", "debit", None, 999, 999),
        ("misapplied", "credit", 800, 800, -800),
        ("matched_by_amount", "credit", 4200, 4200, 0),
        ("unreadable", None, None, None, None),
    ],
)
def test_positive_when_the_customer_is_owed_negative_when_moesif_holds_too_much(
    category: str, entry_type: str | None, stripe: int | None, moesif: int | None, expected: int
) -> None:
    assert correction(category, entry_type, stripe, moesif) == expected
