"""Connect events on the webhook: each is mapped within its ``account`` (section 12)."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import httpx

from reconcile.fakes.stripe import FakeStripe, sign
from reconcile.serve.event_entries import plan_event
from tests.serve.conftest import SECRET, Served


def _deliver(served: Served, event: dict[str, object]) -> int:
    body = json.dumps(event)
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": sign(body, SECRET, int(time.time())),
    }
    with httpx.Client(base_url=served.url, timeout=30) as http:
        return http.post("/webhooks/stripe", content=body.encode(), headers=headers).status_code


def _two_accounts_sharing_a_customer_id(fake: FakeStripe) -> tuple[str, str]:
    first, second = fake.add_account("acct_1first"), fake.add_account("acct_2second")
    payments = []
    for account, company, subscription, amount in (
        (first, "co_1", "sub_m1", 1000),
        (second, "co_2", "sub_m2", 2500),
    ):
        account.add_customer(
            "cus_shared",
            metadata={"moesif_company_id": company, "moesif_subscription_id": subscription},
        )
        paid = account.add_payment_intent("cus_shared", amount)
        account.emit_event("payment_intent.succeeded", "payment_intent", paid)
        payments.append(paid)
    return payments[0], payments[1]


def test_connect_events_are_mapped_within_their_account(served: Served) -> None:
    served.moesif.add_subscription("sub_m2", "co_2")
    first, second = _two_accounts_sharing_a_customer_id(served.stripe)
    events = [
        *served.stripe.account("acct_1first").events(),
        *served.stripe.account("acct_2second").events(),
    ]
    assert [event["account"] for event in events] == ["acct_1first", "acct_2second"]

    assert [_deliver(served, event) for event in events] == [200, 200]
    served.worker.drain()

    posted = {
        body["transaction_id"]: (body["company_id"], body["subscription_id"], body["amount"])
        for body in served.moesif.posts
    }
    assert posted == {
        first: ("co_1", "sub_m1", Decimal("10.00")),
        second: ("co_2", "sub_m2", Decimal("25.00")),
    }
    read_with = {r.stripe_account for r in served.stripe.requests if r.method == "GET"}
    assert read_with == {"acct_1first", "acct_2second"}


def test_a_connect_event_plans_its_account_and_a_platform_event_none() -> None:
    event = {"type": "payment_intent.succeeded", "data": {"object": {"id": "pi_1"}}}
    assert plan_event(event).stripe_account is None
    assert plan_event({**event, "account": "acct_9"}).stripe_account == "acct_9"
    assert plan_event({**event, "account": "acct_9"}).object_ids == ("pi_1",)
