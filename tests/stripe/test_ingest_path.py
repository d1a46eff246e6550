"""The ingest path's own mechanics: pages handed over as read, customers expanded, the transport."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
import stripe

from reconcile.errors import StripeUnavailable
from reconcile.fakes.stripe import FakeStripe
from reconcile.retry import RateLimiter
from reconcile.stripe.client import PacedHTTPClient, stripe_errors
from reconcile.stripe.extract import PAGES_BUFFERED, _as_read, _SliceRead, extract, listed_pages
from tests.stripe.conftest import API_KEY, T0


def test_pages_are_handed_over_as_read_and_never_pile_up() -> None:
    produced = [0]
    lock = threading.Lock()

    def pages(item: int) -> Iterator[list[int]]:
        for number in range(50):
            with lock:
                produced[0] += 1
            yield [item * 1000 + number]

    consumed = 0
    ends = 0
    for value in _as_read(pages, [0, 1, 2, 3, 4, 5], workers=4):
        if isinstance(value, _SliceRead):
            ends += 1
            continue
        consumed += 1
        time.sleep(0.0005)  # a consumer slower than the readers
        with lock:
            # Read ahead by at most the buffer, plus the page each worker is trying to hand over.
            assert produced[0] - consumed <= PAGES_BUFFERED + 4
    assert (consumed, ends) == (300, 6)


def test_a_failing_slice_stops_the_others_and_its_error_reaches_the_consumer() -> None:
    stopped: list[int] = []

    def pages(item: int) -> Iterator[list[int]]:
        try:
            for number in range(10_000):
                if item == 1 and number == 3:
                    raise ValueError("slice 1 broke")
                yield [number]
        finally:
            stopped.append(item)

    with pytest.raises(ValueError, match="slice 1 broke"):
        for _ in _as_read(pages, [0, 1, 2], workers=3):
            pass
    assert sorted(stopped) == [0, 1, 2], "every started slice ended"


def test_leaving_early_stops_the_workers() -> None:
    produced = [0]

    def endless(item: int) -> Iterator[list[int]]:
        while True:
            produced[0] += 1
            yield [item]

    read = _as_read(endless, [0, 1], workers=2)
    next(read)
    read.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("stripe-slice")]
    assert produced[0] <= PAGES_BUFFERED + 3


def test_listed_payments_bring_their_customer_and_it_is_not_fetched(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    customer = fake_stripe.add_customer(
        metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_a"}
    )
    payments = [
        fake_stripe.add_payment_intent(customer, 500 + n, created=T0 + timedelta(hours=n))
        for n in range(3)
    ]
    found = list(extract(client, T0, T0 + timedelta(days=1)))
    assert sorted(e.transaction_id for e in found) == sorted(payments)
    assert {e.subscription_id for e in found} == {"sub_a"}
    listing = [r for r in fake_stripe.requests if r.path == "/v1/payment_intents"]
    assert any("data.customer" in str(r.query) for r in listing)
    assert not [r for r in fake_stripe.requests if r.path.startswith("/v1/customers")]


def test_listed_refunds_bring_their_payment_and_its_customer_and_neither_is_fetched(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    customer = fake_stripe.add_customer(
        metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_a"}
    )
    # paid the day before the window: only the refund is listed in it
    payment = fake_stripe.add_payment_intent(customer, 900, created=T0 - timedelta(hours=3))
    refund = fake_stripe.add_refund(payment, 400, created=T0 + timedelta(hours=2))
    found = list(extract(client, T0, T0 + timedelta(days=1)))
    assert [(e.transaction_id, e.topup_id, e.subscription_id) for e in found] == [
        (refund, payment, "sub_a")
    ]
    fetched = [r.path for r in fake_stripe.requests if r.path.count("/") > 2]
    assert fetched == [], "the payment and its customer came with the refund"


def _mocked(handler: httpx.MockTransport) -> stripe.StripeClient:
    transport = PacedHTTPClient(
        RateLimiter(1000, 1.0, sleep=lambda _: None),
        sleep=lambda _: None,
        rng=random.Random(1),
        api_key=API_KEY,
        http=httpx.Client(transport=handler),
    )
    return stripe.StripeClient(
        API_KEY,
        base_addresses={"api": "http://stripe.test"},
        max_network_retries=0,
        http_client=transport,
    )


def test_the_transport_sends_the_sdk_request_as_built() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "pi_1", "object": "payment_intent"})

    client = _mocked(httpx.MockTransport(answer))
    client.v1.payment_intents.create(
        params={"amount": 500, "currency": "usd"},
        options={"stripe_account": "acct_connected", "idempotency_key": "key-1"},
    )
    (request,) = seen
    assert request.headers["Stripe-Account"] == "acct_connected"
    assert request.headers["Idempotency-Key"] == "key-1"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.content == b"amount=500&currency=usd"


def test_a_lost_connection_is_retried_then_fails_in_one_line() -> None:
    attempts = [0]

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts[0] += 1
        raise httpx.ConnectError("refused", request=request)

    client = _mocked(httpx.MockTransport(refuse))
    with pytest.raises(StripeUnavailable, match="no answer") as caught, stripe_errors():
        client.v1.customers.retrieve("cus_1")
    assert attempts[0] > 1
    assert "\n" not in str(caught.value)


def test_a_server_ignoring_the_created_filter_still_gives_each_entry_once() -> None:
    customer = {
        "id": "cus_1",
        "object": "customer",
        "metadata": {"moesif_company_id": "acme", "moesif_subscription_id": "sub_a"},
    }

    def intent(number: int, created: datetime) -> dict[str, object]:
        return {
            "id": f"pi_{number}",
            "object": "payment_intent",
            "status": "succeeded",
            "customer": customer,
            "invoice": None,
            "amount_received": 500,
            "currency": "usd",
            "created": int(created.timestamp()),
            "metadata": {},
        }

    every = [
        intent(1, T0 + timedelta(hours=2)),
        intent(2, T0 + timedelta(days=1, hours=2)),
        intent(3, T0 + timedelta(days=5)),  # outside the window read
    ]
    listings: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        listings.append(request.url.path)
        data = every if request.url.path == "/v1/payment_intents" else []
        return httpx.Response(200, json={"object": "list", "data": data, "has_more": False})

    client = _mocked(httpx.MockTransport(answer))
    found = list(extract(client, T0, T0 + timedelta(days=2), slice_length=timedelta(days=1)))
    assert sorted(e.transaction_id for e in found) == ["pi_1", "pi_2"]
    assert listings.count("/v1/payment_intents") == 2, "both slices listed every payment"


def test_a_listing_is_read_through_the_sdk_and_parsed_once_into_plain_dicts() -> None:
    seen: list[httpx.Request] = []
    pages = [
        {"object": "list", "data": [{"id": "pi_1", "created": 1}], "has_more": True},
        {"object": "list", "data": [{"id": "pi_2", "created": 2}], "has_more": False},
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=pages[len(seen) - 1])

    transport = PacedHTTPClient(
        RateLimiter(1000, 1.0, sleep=lambda _: None),
        sleep=lambda _: None,
        api_key=API_KEY,
        http=httpx.Client(transport=httpx.MockTransport(answer)),
    )
    client = stripe.StripeClient(
        API_KEY,
        base_addresses={"api": "http://stripe.test"},
        stripe_version="2025-03-31.basil",
        max_network_retries=0,
        http_client=transport,
        stripe_account="acct_connected",
    )
    listed = list(
        listed_pages(client, "/v1/payment_intents", {"expand": ["data.customer"]}, "payments")
    )
    assert [[item["id"] for item in page] for page in listed] == [["pi_1"], ["pi_2"]]
    assert {type(item) for page in listed for item in page} == {dict}
    first, second = seen
    for request in seen:
        assert request.headers["Stripe-Account"] == "acct_connected"
        assert request.headers["Stripe-Version"] == "2025-03-31.basil"
        assert request.headers["Authorization"] == f"Bearer {API_KEY}"
        assert request.url.params["expand[0]"] == "data.customer"
        assert request.url.params["limit"] == "100"
    assert "starting_after" not in first.url.params
    assert second.url.params["starting_after"] == "pi_1"


def test_an_error_answer_to_a_listing_is_the_sdk_error() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"type": "invalid_request_error"}})

    client = _mocked(httpx.MockTransport(answer))
    with pytest.raises(stripe.InvalidRequestError) as caught:
        list(listed_pages(client, "/v1/payment_intents", {}, "payments"))
    assert caught.value.http_status == 404
