"""``POST /top-up`` over real HTTP against the fake Stripe's PaymentIntents and test cards."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx

from reconcile.fakes.stripe import FakeStripe
from tests.serve.conftest import TOKEN, Served


def _customer(fake: FakeStripe, card: str = "pm_card_visa", **metadata: str) -> str:
    customer = fake.add_customer(
        metadata=metadata or {"moesif_company_id": "co_1", "moesif_subscription_id": "sub_m1"}
    )
    fake.set_default_payment_method(customer, card)
    return customer


def _top_up(
    served: Served,
    body: Any,
    *,
    key: str | None = None,
    token: str | None = TOKEN,
) -> httpx.Response:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if key is not None:
        headers["Idempotency-Key"] = key
    with served.http() as http:
        if isinstance(body, bytes):
            return http.post("/top-up", content=body, headers=headers)
        return http.post("/top-up", json=body, headers=headers)


def _intents(fake: FakeStripe) -> list[dict[str, Any]]:
    return fake.objects("payment_intent")


def test_a_top_up_charges_once_and_credits_moesif_once(served: Served) -> None:
    customer = _customer(served.stripe)
    answer = _top_up(served, {"customer_id": customer, "amount": "25.00", "currency": "usd"})

    assert answer.status_code == 200
    body = answer.json()
    intent_id = body["payment_intent_id"]
    assert body == {
        "payment_intent_id": intent_id,
        "status": "succeeded",
        "transaction_id": intent_id,
    }
    [intent] = _intents(served.stripe)
    metadata = dict(intent["metadata"])
    assert metadata.pop("reconcile_topup_key").startswith("reconcile-topup-")
    assert metadata == {"moesif_company_id": "co_1", "moesif_subscription_id": "sub_m1"}
    assert (intent["amount"], intent["status"]) == (2500, "succeeded")

    served.worker.drain()
    served.stripe.configure_webhook(
        f"{served.url}/webhooks/stripe", "whsec_current", sleep=lambda _s: None, duplicates=True
    )
    assert set(served.stripe.deliver()) == {200}
    served.worker.drain()

    credits = [post for post in served.moesif.posts if post["transaction_id"] == intent_id]
    assert [(post["type"], post["amount"]) for post in credits] == [("credit", Decimal("25.00"))]
    assert served.origins[0] == f"top-up:{intent_id}"


def test_the_same_idempotency_key_twice_charges_once(served: Served) -> None:
    customer = _customer(served.stripe)
    request = {"customer_id": customer, "amount": "10.00", "currency": "usd"}
    first = _top_up(served, request, key="order-42")
    second = _top_up(served, request, key="order-42")
    third = _top_up(served, request, key="order-43")

    assert first.status_code == second.status_code == third.status_code == 200
    assert first.json()["payment_intent_id"] == second.json()["payment_intent_id"]
    assert third.json()["payment_intent_id"] != first.json()["payment_intent_id"]
    assert len(_intents(served.stripe)) == 2
    changed = _top_up(served, {**request, "amount": "11.00"}, key="order-42")
    assert changed.status_code == 409
    assert len(_intents(served.stripe)) == 2


def test_a_declined_card_is_402_with_the_decline_code_and_credits_nothing(
    served: Served,
) -> None:
    customer = _customer(served.stripe, card="pm_card_chargeDeclined")
    answer = _top_up(served, {"customer_id": customer, "amount": "5.00", "currency": "usd"})
    assert answer.status_code == 402
    assert answer.json()["decline_code"] == "generic_decline"
    served.worker.drain()
    assert served.moesif.posts == []


def test_authentication_required_is_202_and_nothing_is_credited_yet(served: Served) -> None:
    customer = _customer(served.stripe, card="pm_card_authenticationRequired")
    answer = _top_up(served, {"customer_id": customer, "amount": "5.00", "currency": "usd"})
    assert answer.status_code == 202
    assert answer.json() == {
        "payment_intent_id": _intents(served.stripe)[0]["id"],
        "status": "requires_action",
    }
    served.worker.drain()
    assert served.moesif.posts == []


def test_an_unmapped_customer_is_409_and_never_charged(served: Served) -> None:
    fake = served.stripe
    bare = fake.add_customer()
    fake.set_default_payment_method(bare, "pm_card_visa")
    several = fake.add_customer()
    fake.set_default_payment_method(several, "pm_card_visa")
    fake.add_subscription(several)
    fake.add_subscription(several)
    for customer in (bare, several):
        answer = _top_up(served, {"customer_id": customer, "amount": "5.00", "currency": "usd"})
        assert answer.status_code == 409
        assert "nothing was charged" in answer.json()["error"]
    assert _intents(fake) == []


def test_the_customers_only_subscription_maps_the_top_up(served: Served) -> None:
    fake = served.stripe
    customer = fake.add_customer(metadata={"moesif_company_id": "co_1"})
    fake.set_default_payment_method(customer, "pm_card_visa")
    subscription = fake.add_subscription(customer)
    served.moesif.add_subscription(subscription, "co_1")  # Moesif must have it (contract 9a)
    answer = _top_up(served, {"customer_id": customer, "amount": "5.00", "currency": "usd"})
    assert answer.status_code == 200
    assert _intents(fake)[0]["metadata"]["moesif_subscription_id"] == subscription


def test_bad_inputs_are_400_and_charge_nothing(served: Served) -> None:
    customer = _customer(served.stripe)
    for body in (
        b"not json",
        {"customer_id": customer, "amount": "1.001", "currency": "usd"},
        {"customer_id": customer, "amount": "0", "currency": "usd"},
        {"customer_id": customer, "amount": "5", "currency": "zzz"},
        {"customer_id": "cus_unknown", "amount": "5", "currency": "usd"},
    ):
        assert _top_up(served, body).status_code == 400
    assert (
        _top_up(
            served, {"customer_id": customer, "amount": "5", "currency": "usd"}, key=""
        ).status_code
        == 400
    )
    assert _intents(served.stripe) == []


def test_without_the_right_token_it_is_401(served: Served) -> None:
    customer = _customer(served.stripe)
    request = {"customer_id": customer, "amount": "5.00", "currency": "usd"}
    assert _top_up(served, request, token=None).status_code == 401
    assert _top_up(served, request, token="wrong").status_code == 401
    assert _intents(served.stripe) == []


def test_only_one_endpoint_is_served_when_asked(make_served: Callable[..., Served]) -> None:
    webhook_only = make_served(only="webhook")
    with webhook_only.http() as http:
        assert http.post("/top-up", json={}).status_code == 404
        assert http.get("/healthz").status_code == 200
    topup_only = make_served(only="top-up")
    with topup_only.http() as http:
        assert http.post("/webhooks/stripe", content=b"{}").status_code == 404
        assert http.post("/top-up", json={}).status_code == 401
