"""The entries that settle a finding whose correction is determined (contract section 10a)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.domain.ids import finding_id
from reconcile.errors import GuardrailTripped
from reconcile.posting.guardrails import check_guardrails
from reconcile.rules.correction import (
    MANUAL_STEPS,
    CorrectionFinding,
    Plan,
    confirmation,
    corrected_finding,
    correction_id,
    plan,
)
from reconcile.rules.delta import correction

FID = finding_id("amount_mismatch", "pi_1", "row_1")


def found(
    category: str,
    entry_type: str | None = "credit",
    stripe: int | None = None,
    moesif: int | None = None,
    **extra: str | None,
) -> CorrectionFinding:
    values: dict[str, str | None] = {
        "company_id": "acme",
        "subscription_id": "sub_1",
        "currency": "usd",
    } | extra
    return CorrectionFinding(
        finding_id=FID,
        category=category,
        company_id=values.pop("company_id"),
        subscription_id=values.pop("subscription_id"),
        currency=values.pop("currency"),
        entry_type=entry_type,
        stripe_amount_minor=stripe,
        moesif_amount_minor=moesif,
        **values,
    )


def legs(result: Plan) -> list[tuple[str, str, str, int, str]]:
    return [
        (e.transaction_id, e.entry_type, e.subscription_id, e.amount_minor, e.currency)
        for e in result.entries
    ]


def test_an_amount_recorded_too_large_is_taken_back_with_a_debit() -> None:
    result = plan(found("amount_mismatch", "credit", 1050, 105000))
    assert result.postable
    assert legs(result) == [(f"corr_{FID}", "debit", "sub_1", 103950, "usd")]
    entry = result.entries[0]
    assert entry.company_id == "acme"
    assert f"corr_{FID}" in entry.description
    assert FID in entry.description


@pytest.mark.parametrize(
    ("category", "entry_type", "stripe", "moesif", "expected"),
    [
        ("amount_mismatch", "credit", 1050, 1000, ("credit", 50)),
        ("amount_mismatch", "debit", 500, 800, ("credit", 300)),  # debited too much: owed
        ("amount_mismatch", "debit", 800, 500, ("debit", 300)),
        ("duplicate_in_moesif", "credit", 500, 500, ("debit", 500)),
        ("duplicate_in_moesif", "debit", 500, 500, ("credit", 500)),
    ],
)
def test_the_correction_moves_the_balance_by_the_findings_delta(
    category: str, entry_type: str, stripe: int, moesif: int, expected: tuple[str, int]
) -> None:
    result = plan(found(category, entry_type, stripe, moesif))
    assert [(e.entry_type, e.amount_minor) for e in result.entries] == [expected]


def test_a_matched_row_of_the_other_type_is_set_against_its_movement_as_it_is() -> None:
    # Stripe credited 5.00; Moesif holds a debit of 5.00: the balance needs +10.00.
    result = plan(found("amount_mismatch", "credit", 500, 500, moesif_entry_type="debit"))
    assert [(e.entry_type, e.amount_minor) for e in result.entries] == [("credit", 1000)]
    duplicate = plan(found("duplicate_in_moesif", "credit", 500, 300, moesif_entry_type="debit"))
    assert [(e.entry_type, e.amount_minor) for e in duplicate.entries] == [("credit", 300)]


def test_a_row_missing_in_stripe_is_corrected_only_once_confirmed_an_error() -> None:
    finding = found("missing_in_stripe", "credit", None, 999)
    refused = plan(finding)
    assert not refused.postable
    assert "confirmed as an error" in str(refused.refusal)
    assert legs(plan(finding, confirmed_error=True)) == [
        (f"corr_{FID}", "debit", "sub_1", 999, "usd")
    ]


def test_a_misapplied_row_is_moved_in_two_legs() -> None:
    result = plan(
        found(
            "misapplied",
            "credit",
            800,
            800,
            company_id="wrong",
            subscription_id="sub_wrong",
            belongs_company_id="acme",
            belongs_subscription_id="sub_right",
        )
    )
    assert legs(result) == [
        (f"corr_{FID}", "debit", "sub_wrong", 800, "usd"),
        (f"corr_{FID}_2", "credit", "sub_right", 800, "usd"),
    ]
    assert [e.company_id for e in result.entries] == ["wrong", "acme"]
    assert "leg 2 of 2" in result.entries[1].description


def test_a_misapplied_refund_is_moved_as_a_debit() -> None:
    result = plan(
        found(
            "misapplied",
            "debit",
            300,
            300,
            belongs_company_id="acme",
            belongs_subscription_id="sub_right",
        )
    )
    assert [(e.entry_type, e.amount_minor) for e in result.entries] == [
        ("credit", 300),
        ("debit", 300),
    ]


def test_a_misapplied_row_without_its_destination_is_refused() -> None:
    result = plan(found("misapplied", "credit", 800, 800))
    assert result.entries == ()
    assert result.refusal == "where the movement belongs is not known"


@pytest.mark.parametrize(
    "category",
    [
        "missing_in_moesif",
        "currency_mismatch",
        "unmapped_customer",
        "matched_by_amount",
        "unreadable",
        "balance_break",
        "stripe_total_mismatch",
    ],
)
def test_categories_without_an_automatic_correction_say_what_to_do(category: str) -> None:
    result = plan(found(category, "credit", 500, 400))
    assert not result.postable
    assert result.entries == ()
    assert MANUAL_STEPS[category] in str(result.refusal)
    assert confirmation(result).startswith(f"Nothing will be posted for {FID}:")


@pytest.mark.parametrize(
    ("finding", "reason"),
    [
        (found("amount_mismatch", "credit", 500, 500), "needs no correction"),
        (found("amount_mismatch", "credit", 500, 400, company_id=None), "no company"),
        (found("amount_mismatch", "credit", 500, 400, subscription_id=None), "no company"),
        (found("amount_mismatch", "credit", 500, 400, currency=None), "no currency"),
        (found("amount_mismatch", "credit", 500, 400, currency="zz9"), "no currency"),
        (found("amount_mismatch", "usage", 500, 400), "neither credit nor debit"),
        (found("amount_mismatch", "credit", None, None), "amounts are not known"),
        (found("amount_mismatch", "credit", 0, 10**13), "more than 12 digits"),
    ],
)
def test_a_correction_that_cannot_be_determined_is_refused(
    finding: CorrectionFinding, reason: str
) -> None:
    result = plan(finding)
    assert not result.postable
    assert reason in str(result.refusal)


def test_the_confirmation_shows_exactly_what_will_be_posted() -> None:
    text = confirmation(plan(found("amount_mismatch", "credit", 1050, 105000)))
    assert text.splitlines() == [
        f"Correcting {FID} will post to Moesif:",
        f"  debit of 1,039.50 USD on company acme, subscription sub_1, transaction_id corr_{FID}",
        "Each is posted at most once; the next run checks that the finding is settled.",
    ]


def test_zero_decimal_amounts_are_confirmed_in_their_own_units() -> None:
    text = confirmation(plan(found("duplicate_in_moesif", "credit", 5000, 5000, currency="JPY")))
    assert "debit of 5,000 JPY" in text


def test_correction_ids_name_their_finding_and_leg() -> None:
    assert correction_id(FID) == f"corr_{FID}"
    assert correction_id(FID, 2) == f"corr_{FID}_2"
    assert corrected_finding(f"corr_{FID}") == (FID, 1)
    assert corrected_finding(f"corr_{FID}_2") == (FID, 2)
    for other in (None, "", "pi_123", f"corr_{FID}_3", f"xcorr_{FID}", "corr_F-"):
        assert corrected_finding(other) is None
    with pytest.raises(ValueError, match="legs"):
        correction_id(FID, 3)


def test_corrections_stay_inside_the_posting_guardrails() -> None:
    entries = plan(found("amount_mismatch", "credit", 1050, 105000)).entries
    check_guardrails(entries, max_postings=1, max_total=Decimal("1039.50"))
    with pytest.raises(GuardrailTripped):
        check_guardrails(entries, max_postings=1, max_total=Decimal("1000"))


@given(
    category=st.sampled_from(["amount_mismatch", "duplicate_in_moesif", "missing_in_stripe"]),
    entry_type=st.sampled_from(["credit", "debit"]),
    stripe=st.integers(0, 10**11),
    moesif=st.integers(0, 10**11),
)
def test_a_posted_correction_moves_the_balance_by_exactly_the_delta(
    category: str, entry_type: str, stripe: int, moesif: int
) -> None:
    result = plan(found(category, entry_type, stripe, moesif), confirmed_error=True)
    delta = correction(category, entry_type, stripe, moesif)
    moved = sum(e.amount_minor * (1 if e.entry_type == "credit" else -1) for e in result.entries)
    assert moved == (delta if result.postable else 0)
    assert result.postable == bool(delta)
    assert all(e.amount_minor > 0 for e in result.entries)
