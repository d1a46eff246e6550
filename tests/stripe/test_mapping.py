"""The pure decisions: what is a top-up, and which Moesif company and subscription it credits."""

from __future__ import annotations

from reconcile.domain.vocab import EntryType, Source
from reconcile.stripe.extract import balance_movement, movement_amount, refund_moved_money
from reconcile.stripe.mapping import (
    company_of,
    id_of,
    is_topup,
    live_subscription_ids,
    map_topup,
    needs_subscription_list,
    pays_payment_intent,
    resolve_subscription,
)

PAID = {"id": "pi_1", "status": "succeeded", "customer": "cus_1", "metadata": {}}
CUSTOMER = {"id": "cus_1", "metadata": {}}


def test_a_succeeded_payment_with_a_customer_is_a_topup() -> None:
    assert is_topup(PAID, invoice_linked=False)
    assert is_topup({**PAID, "customer": {"id": "cus_1", "object": "customer"}}, False)


def test_payments_that_are_not_topups() -> None:
    assert not is_topup({**PAID, "customer": None}, False)
    assert not is_topup({**PAID, "status": "processing"}, False)
    assert not is_topup({**PAID, "status": "requires_action"}, False)
    assert not is_topup(PAID, invoice_linked=True)
    for flag in ("false", "FALSE", " False "):
        assert not is_topup({**PAID, "metadata": {"moesif_topup": flag}}, False)
    assert is_topup({**PAID, "metadata": {"moesif_topup": "true"}}, False)


def test_company_from_metadata_else_customer_id() -> None:
    assert company_of({"id": "cus_1", "metadata": {"moesif_company_id": "acme"}}) == "acme"
    assert company_of({"id": "cus_1", "metadata": {"moesif_company_id": "  "}}) == "cus_1"
    assert company_of({"id": "cus_1", "deleted": True}) == "cus_1"


def test_subscription_from_payment_metadata_first() -> None:
    payment = {**PAID, "metadata": {"moesif_subscription_id": "sub_pi"}}
    customer = {"id": "cus_1", "metadata": {"moesif_subscription_id": "sub_cus"}}
    assert resolve_subscription(payment, customer, ["sub_stripe"]) == ("sub_pi", None)
    assert resolve_subscription(PAID, customer, ["sub_stripe"]) == ("sub_cus", None)
    assert not needs_subscription_list(PAID, customer)
    assert needs_subscription_list(PAID, CUSTOMER)


def test_subscription_from_the_only_non_canceled_stripe_subscription() -> None:
    listed = [
        {"id": "sub_old", "status": "canceled", "customer": "cus_1"},
        {"id": "sub_live", "status": "past_due", "customer": "cus_1"},
    ]
    assert live_subscription_ids(listed, "cus_1") == ["sub_live"]
    assert resolve_subscription(PAID, CUSTOMER, ["sub_live"]) == ("sub_live", None)


def test_only_canceled_ends_a_subscription() -> None:
    statuses = ["incomplete", "incomplete_expired", "trialing", "active", "past_due", "unpaid"]
    listed = [{"id": f"sub_{s}", "status": s, "customer": "cus_1"} for s in statuses]
    assert live_subscription_ids(listed, "cus_1") == [f"sub_{s}" for s in statuses]


def test_subscriptions_of_other_customers_do_not_count() -> None:
    listed = [
        {"id": "sub_mine", "status": "active", "customer": "cus_1"},
        {"id": "sub_expanded", "status": "active", "customer": {"id": "cus_1"}},
        {"id": "sub_theirs", "status": "active", "customer": "cus_2"},
        {"id": "sub_nobody", "status": "active"},
    ]
    assert live_subscription_ids(listed, "cus_1") == ["sub_mine", "sub_expanded"]


def test_an_invoice_payment_counts_only_for_its_own_payment_intent() -> None:
    def paying(payment: object) -> dict[str, object]:
        return {"id": "inpay_1", "payment": payment}

    assert pays_payment_intent(paying({"type": "payment_intent", "payment_intent": "pi_1"}), "pi_1")
    assert pays_payment_intent(paying({"payment_intent": {"id": "pi_1"}}), "pi_1")
    assert not pays_payment_intent(paying({"payment_intent": "pi_2"}), "pi_1")
    assert not pays_payment_intent(paying({"type": "charge", "charge": "ch_1"}), "pi_1")
    assert not pays_payment_intent(paying(None), "pi_1")


def test_none_or_several_subscriptions_are_never_guessed() -> None:
    assert resolve_subscription(PAID, CUSTOMER, []) == (
        None,
        "customer cus_1 has no Moesif subscription id and no Stripe subscription that is not "
        "canceled",
    )
    assert resolve_subscription(PAID, CUSTOMER, ["sub_a", "sub_b"]) == (
        None,
        "customer cus_1 has no Moesif subscription id and 2 Stripe subscriptions that are not "
        "canceled",
    )


def test_an_unmapped_topup_keeps_its_company_only_as_a_hint() -> None:
    customer = {"id": "cus_1", "metadata": {"moesif_company_id": "acme"}}
    topup = map_topup(PAID, customer, ["sub_a", "sub_b"])
    assert (topup.company_id, topup.subscription_id, topup.company_hint) == (None, None, "acme")
    assert topup.unmapped_reason is not None
    mapped = map_topup(PAID, customer, ["sub_a"])
    assert (mapped.company_id, mapped.subscription_id, mapped.unmapped_reason) == (
        "acme",
        "sub_a",
        None,
    )


def test_ids_of_expandable_fields() -> None:
    assert id_of("ch_1") == "ch_1"
    assert id_of({"id": "ch_1", "object": "charge"}) == "ch_1"
    assert id_of(None) is None
    assert id_of("") is None


def test_refunds_that_moved_money() -> None:
    assert refund_moved_money({"status": "succeeded"})
    assert refund_moved_money({"status": "failed", "balance_transaction": "txn_1"})
    assert not refund_moved_money({"status": "failed", "balance_transaction": None})
    assert not refund_moved_money({"status": "pending", "balance_transaction": "txn_1"})
    assert not refund_moved_money({"status": "canceled"})


def test_balance_movements_by_reporting_category_or_type() -> None:
    assert balance_movement({"reporting_category": "dispute", "type": "adjustment"}) == (
        Source.DISPUTE,
        EntryType.DEBIT,
    )
    assert balance_movement({"reporting_category": "dispute_reversal"}) == (
        Source.DISPUTE_REVERSAL,
        EntryType.CREDIT,
    )
    assert balance_movement({"type": "refund_failure"}) == (
        Source.REFUND_FAILURE,
        EntryType.CREDIT,
    )
    assert balance_movement({"reporting_category": "charge", "type": "charge"}) is None
    assert balance_movement({"reporting_category": "refund", "type": "refund"}) is None


def test_movement_amount_in_the_payment_currency() -> None:
    same = {"amount": -1500, "currency": "usd"}
    assert movement_amount(same, {"amount": 1500, "currency": "usd"}) == (1500, "usd")
    settled = {"amount": -1012, "currency": "usd"}
    assert movement_amount(settled, {"amount": 1500, "currency": "JPY"}) == (1500, "jpy")
