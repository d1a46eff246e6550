"""Stripe-compatible servers that differ from Stripe: missing endpoints, ignored filters, echoes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import stripe

from reconcile.config import Secret
from reconcile.errors import StripeUnavailable
from reconcile.fakes.stripe import COLLECTIONS, FakeStripe
from reconcile.stripe.extract import extract
from reconcile.stripe.mapping import INVOICE_PAYMENT_PAGE, StripeLookup
from tests.stripe.conftest import API_KEY, T0

BASIL = "2025-03-31.basil"
WITHOUT_INVOICE_PAYMENTS = set(COLLECTIONS) - {"invoice_payments"}
MakeClient = Callable[..., stripe.StripeClient]


@pytest.fixture
def other_server() -> Iterator[Callable[..., FakeStripe]]:
    """Start fakes with the given switches; stop them all after the test."""
    started: list[FakeStripe] = []

    def start(**switches: Any) -> FakeStripe:
        server = FakeStripe(api_key=switches.pop("api_key", API_KEY), clock=lambda: T0, **switches)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def window(client: stripe.StripeClient) -> set[str]:
    return {e.transaction_id for e in extract(client, T0 - timedelta(days=1), T0 + timedelta(1))}


def mapped_customer(fake: FakeStripe) -> str:
    return fake.add_customer(
        metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_m"}
    )


# -- a server without /v1/invoice_payments ------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        (404, {"detail": "Not Found"}),
        (405, {"detail": "Method Not Allowed"}),
        (501, {"message": "Not Implemented"}),
    ],
)
def test_no_invoice_payments_in_any_error_shape_links_no_invoices(
    other_server: Callable[..., FakeStripe],
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
    answer: tuple[int, dict[str, str]],
) -> None:
    bare = other_server(serve=WITHOUT_INVOICE_PAYMENTS, unknown_url=answer)
    client = make_client(stripe_api_version=BASIL, stripe_api_base=bare.base_url)
    customer = mapped_customer(bare)
    first = bare.add_payment_intent(customer, 1000, created=T0)
    second = bare.add_payment_intent(customer, 2000, created=T0)

    assert window(client) == {first, second}
    asked = [r.status for r in bare.requests if r.path == "/v1/invoice_payments"]
    assert asked == [answer[0]], "asked once, then remembered"
    assert caplog.text.count("no /v1/invoice_payments") == 1


def test_no_invoice_payments_is_warned_once_across_threads(
    other_server: Callable[..., FakeStripe],
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bare = other_server(serve=WITHOUT_INVOICE_PAYMENTS, unknown_url=(404, {"detail": "nope"}))
    lookup = StripeLookup(make_client(stripe_api_version=BASIL, stripe_api_base=bare.base_url))
    threads = 4
    bare.delay_next(0.05, count=threads)  # every thread asks before any answer arrives
    start = threading.Barrier(threads)
    linked: list[bool] = []

    def ask(number: int) -> None:
        start.wait()
        linked.append(lookup.invoice_linked({"id": f"pi_{number}"}))

    workers = [threading.Thread(target=ask, args=(n,)) for n in range(threads)]
    with caplog.at_level(logging.WARNING):
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=5)
    assert linked == [False] * threads
    assert len([r for r in bare.requests if r.path == "/v1/invoice_payments"]) == threads
    assert caplog.text.count("no /v1/invoice_payments") == 1


def test_other_errors_of_invoice_payments_still_fail(
    fake_stripe: FakeStripe, make_client: MakeClient
) -> None:
    lookup = StripeLookup(make_client(stripe_api_version=BASIL))
    fake_stripe.fail_next(400)
    with pytest.raises(stripe.InvalidRequestError):
        lookup.invoice_linked({"id": "pi_1"})
    assert [r.status for r in fake_stripe.requests] == [400]


# -- servers that ignore list filters -----------------------------------------------------------


def test_invoice_payments_of_other_payments_do_not_link(
    other_server: Callable[..., FakeStripe], make_client: MakeClient
) -> None:
    loose = other_server(ignore_filters={"invoice_payments"})
    client = make_client(stripe_api_version=BASIL, stripe_api_base=loose.base_url)
    customer = mapped_customer(loose)
    topup = loose.add_payment_intent(customer, 1000, created=T0)
    # More invoice payments than one page: the oldest one's own payment is found on page two.
    billed = [
        loose.add_payment_intent(customer, 9900, invoice=f"in_{n}", created=T0)
        for n in range(INVOICE_PAYMENT_PAGE + 2)
    ]

    assert window(client) == {topup}
    asked = [r.query for r in loose.requests if r.path == "/v1/invoice_payments"]
    assert any("starting_after" in query for query in asked), "pages past the first"
    assert {q["payment[payment_intent]"] for q in asked} == {topup, *billed}


def test_subscriptions_of_other_customers_do_not_make_several(
    other_server: Callable[..., FakeStripe], make_client: MakeClient
) -> None:
    loose = other_server(ignore_filters={"subscriptions"})
    client = make_client(stripe_api_base=loose.base_url)
    first, second = loose.add_customer(), loose.add_customer()
    first_subscription = loose.add_subscription(first)
    second_subscription = loose.add_subscription(second)
    paid_first = loose.add_payment_intent(first, 100, created=T0)
    paid_second = loose.add_payment_intent(second, 100, created=T0)

    found = {
        e.transaction_id: e for e in extract(client, T0 - timedelta(days=1), T0 + timedelta(1))
    }
    assert (found[paid_first].company_id, found[paid_first].subscription_id) == (
        first,
        first_subscription,
    )
    assert (found[paid_second].company_id, found[paid_second].subscription_id) == (
        second,
        second_subscription,
    )


# -- a server that echoes the key -----------------------------------------------------------------


def test_a_key_of_any_format_echoed_in_an_error_is_scrubbed(
    other_server: Callable[..., FakeStripe],
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    odd_key = "proxy-Token.7f3a9c2e/XYZ"
    echoing = other_server(api_key=odd_key, echo_key=True)
    client = make_client(stripe_api_key=Secret(odd_key), stripe_api_base=echoing.base_url)
    echoing.fail_next(400)
    with (
        caplog.at_level(logging.DEBUG, logger="reconcile"),
        pytest.raises(StripeUnavailable) as failure,
    ):
        list(extract(client, T0, T0 + timedelta(hours=1)))
    message = str(failure.value)
    assert "HTTP 400" in message
    assert "(key [key])" in message, "the echo is there, masked"
    assert odd_key not in message
    assert odd_key not in repr(failure.value)
    assert odd_key not in caplog.text
