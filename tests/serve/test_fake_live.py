"""The fake Stripe's live side: events shaped as Stripe's, signed as Stripe signs, keys honoured."""

from __future__ import annotations

import json

import pytest
import stripe

from reconcile.fakes.stripe import FakeStripe, sign
from tests.conftest import REFERENCE_DATA
from tests.serve.conftest import stripe_client


def _stripe_event() -> dict[str, object]:
    fixtures = json.loads((REFERENCE_DATA / "stripe" / "fixtures3.json").read_text())
    event: dict[str, object] = fixtures["resources"]["event"]
    return event


def test_events_have_the_shape_of_stripes_example(fake_stripe: FakeStripe) -> None:
    customer = fake_stripe.add_customer()
    fake_stripe.emit_event("customer.created", "customer", customer)
    [event] = fake_stripe.events()
    assert set(event) == set(_stripe_event())
    assert event["data"]["object"]["id"] == customer


def test_the_fake_signs_so_that_the_sdk_verifies() -> None:
    payload = json.dumps(_stripe_event())
    header = sign(payload, "whsec_x", 1_700_000_000)
    assert stripe.WebhookSignature.verify_header(payload, header, "whsec_x", tolerance=None)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload, header, "whsec_y", tolerance=None)


def test_a_declined_charge_is_replayed_for_its_idempotency_key(fake_stripe: FakeStripe) -> None:
    customer = fake_stripe.add_customer()
    client = stripe_client(fake_stripe)
    params = {
        "amount": 500,
        "currency": "usd",
        "customer": customer,
        "payment_method": "pm_card_chargeDeclinedInsufficientFunds",
        "off_session": True,
        "confirm": True,
    }
    codes = []
    for _attempt in range(2):
        with pytest.raises(stripe.CardError) as declined:
            client.v1.payment_intents.create(params=params, options={"idempotency_key": "k1"})
        codes.append(declined.value.error.decline_code if declined.value.error else None)
    assert codes == ["insufficient_funds", "insufficient_funds"]
    assert len(fake_stripe.objects("payment_intent")) == 1
    assert [event["type"] for event in fake_stripe.events()] == [
        "payment_intent.created",
        "payment_intent.payment_failed",
    ]
