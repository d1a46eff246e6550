"""Fetching Stripe objects by the ids seen on ledger rows, mapped exactly as the window reads."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import stripe

from reconcile.domain.values import ExpectedEntry
from reconcile.errors import StripeUnavailable
from reconcile.fakes.stripe import FakeStripe
from reconcile.stripe.extract import extract, extract_by_ids
from tests.stripe.conftest import ATTEMPTS, T0

LONG_AGO = T0 - timedelta(days=60)
"""When the seeded history happened: far before the window a run reads."""


def whole_history(client: stripe.StripeClient) -> dict[str, ExpectedEntry]:
    found = extract(client, LONG_AGO - timedelta(days=1), T0, slice_length=timedelta(days=90))
    return {entry.transaction_id: entry for entry in found}


def mapped_customer(fake: FakeStripe, company: str) -> str:
    return fake.add_customer(
        metadata={"moesif_company_id": company, "moesif_subscription_id": f"sub_{company}"}
    )


def seed_one_of_each(fake: FakeStripe, company: str = "acme") -> dict[str, str]:
    payment = fake.add_payment_intent(mapped_customer(fake, company), 5000, created=LONG_AGO)
    refund = fake.add_refund(payment, 1000, created=LONG_AGO + timedelta(hours=1))
    failure = fake.fail_refund(refund, created=LONG_AGO + timedelta(hours=2))
    dispute = fake.add_dispute(payment, 4000, created=LONG_AGO + timedelta(hours=3))
    reversal = fake.reinstate_dispute(dispute, created=LONG_AGO + timedelta(hours=4))
    withdrawal = next(
        t["id"]
        for t in fake.objects("balance_transaction")
        if t["source"] == dispute and t["reporting_category"] == "dispute"
    )
    return {
        "topup": payment,
        "refund": refund,
        "refund_failure": failure,
        "dispute": withdrawal,
        "dispute_reversal": reversal,
    }


def test_each_kind_of_id_gives_the_entry_the_window_would(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    ids = seed_one_of_each(fake_stripe)
    assert list(extract(client, T0 - timedelta(days=1), T0 + timedelta(days=1))) == []

    by_ids = {e.transaction_id: e for e in extract_by_ids(client, list(ids.values()))}

    expected = whole_history(client)
    assert set(expected) == set(ids.values())
    assert by_ids == expected
    transaction_fetches = [
        r.query for r in fake_stripe.requests if r.path.startswith("/v1/balance_transactions/")
    ]
    assert transaction_fetches == [{"expand[0]": "source"}] * 3


def test_ids_that_are_no_movement_of_ours_give_nothing(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    customer = mapped_customer(fake_stripe, "acme")
    not_topup = fake_stripe.add_payment_intent(
        customer, 100, metadata={"moesif_topup": "false"}, created=LONG_AGO
    )
    billed = fake_stripe.add_payment_intent(customer, 100, invoice="in_1", created=LONG_AGO)
    billed_refund = fake_stripe.add_refund(billed, 50, created=LONG_AGO)
    pending = fake_stripe.add_refund(
        fake_stripe.add_payment_intent(customer, 100, created=LONG_AGO), 10, status="pending"
    )
    charge_movement = next(
        t["id"] for t in fake_stripe.objects("balance_transaction") if t["type"] == "charge"
    )
    ids = [not_topup, billed, billed_refund, pending, charge_movement]
    assert list(extract_by_ids(client, ids)) == []


def test_unknown_ids_and_other_prefixes_are_skipped_and_logged(
    fake_stripe: FakeStripe, client: stripe.StripeClient, caplog: pytest.LogCaptureFixture
) -> None:
    ids = seed_one_of_each(fake_stripe)
    customer = fake_stripe.add_customer()
    asked = ["pi_missing", customer, "re_missing", "txn_missing", ids["topup"], "manual-credit-7"]
    with caplog.at_level(logging.INFO, logger="reconcile.stripe.extract"):
        found = [e.transaction_id for e in extract_by_ids(client, asked)]
    assert found == [ids["topup"]]
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    for unknown in ("pi_missing", "re_missing", "txn_missing"):
        assert f"skipped {unknown}: Stripe has no such object (HTTP 404)" in skipped
    for other in (customer, "manual-credit-7"):
        assert any(m.startswith(f"skipped {other}: not a") for m in skipped)
    fetched = {r.path for r in fake_stripe.requests}
    assert f"/v1/customers/{customer}" not in fetched, "a cus_ id is not fetched as a movement"


def test_companies_filter_and_each_id_once(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    acme = seed_one_of_each(fake_stripe, "acme")
    beta = seed_one_of_each(fake_stripe, "beta")
    asked = [*acme.values(), *beta.values(), acme["refund"], beta["topup"]]

    found = [e.transaction_id for e in extract_by_ids(client, asked, companies=["beta"])]

    assert found == list(beta.values())
    assert {e.company_id for e in extract_by_ids(client, asked)} == {"acme", "beta"}


def test_one_lookup_caches_the_payment_behind_many_movements(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    ids = seed_one_of_each(fake_stripe)
    assert len(list(extract_by_ids(client, list(ids.values())))) == len(ids)
    fetched = [r.path for r in fake_stripe.requests if r.path.startswith("/v1/payment_intents/")]
    assert fetched == [f"/v1/payment_intents/{ids['topup']}"]


def test_stripe_failures_other_than_404_fail_the_run(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    ids = seed_one_of_each(fake_stripe)
    fake_stripe.fail_next(500, count=ATTEMPTS)
    with pytest.raises(StripeUnavailable, match="HTTP 500"):
        list(extract_by_ids(client, [ids["refund"]]))
