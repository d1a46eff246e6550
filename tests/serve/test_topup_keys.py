"""``/top-up`` remembers every ``Idempotency-Key``: days later, across restarts, under races."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from reconcile.db.engine import make_engine
from reconcile.db.models import TopUpKey
from reconcile.fakes.stripe import FakeStripe
from reconcile.serve import topup_keys
from reconcile.serve.topup import TopUps
from reconcile.serve.topup_request import TopUpRequest
from tests.serve.conftest import STRIPE_KEY, TOKEN, Clock, Served, stripe_client

TWO_DAYS = timedelta(days=2)


@pytest.fixture
def stripe_clock() -> Clock:
    return Clock()


@pytest.fixture
def fake_stripe(stripe_clock: Clock) -> Iterator[FakeStripe]:
    """The fake Stripe on a clock the test moves: it forgets idempotency keys after 24 hours."""
    with FakeStripe(api_key=STRIPE_KEY, clock=stripe_clock) as fake:
        yield fake


def _customer(fake: FakeStripe) -> str:
    customer = fake.add_customer(
        metadata={"moesif_company_id": "co_1", "moesif_subscription_id": "sub_m1"}
    )
    fake.set_default_payment_method(customer, "pm_card_visa")
    return customer


def _top_up(served: Served, body: dict[str, str], key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    with served.http() as http:
        return http.post("/top-up", json=body, headers=headers)


def _intents(fake: FakeStripe) -> list[dict[str, Any]]:
    return fake.objects("payment_intent")


def _intent_posts(fake: FakeStripe) -> int:
    return sum(
        1
        for request in fake.requests
        if request.method == "POST" and request.path.startswith("/v1/payment_intents")
    )


def _later(served: Served, stripe_clock: Clock, by: timedelta) -> None:
    served.clock.moment += by
    stripe_clock.moment += by


def test_the_fake_stripe_forgets_a_key_after_24_hours(
    fake_stripe: FakeStripe, stripe_clock: Clock
) -> None:
    customer = _customer(fake_stripe)
    client = stripe_client(fake_stripe)
    params = {"amount": 100, "currency": "usd", "customer": customer, "confirm": True}
    params["payment_method"] = "pm_card_visa"
    first = client.v1.payment_intents.create(params=params, options={"idempotency_key": "k"})
    stripe_clock.moment += timedelta(hours=23)
    again = client.v1.payment_intents.create(params=params, options={"idempotency_key": "k"})
    stripe_clock.moment += timedelta(hours=2)
    later = client.v1.payment_intents.create(params=params, options={"idempotency_key": "k"})
    assert first.id == again.id != later.id
    assert len(_intents(fake_stripe)) == 2


def test_the_same_key_two_days_later_gets_the_same_answer_and_no_second_charge(
    served: Served, stripe_clock: Clock
) -> None:
    customer = _customer(served.stripe)
    request = {"customer_id": customer, "amount": "25.00", "currency": "usd"}
    first = _top_up(served, request, "order-1")
    assert first.status_code == 200
    posts = _intent_posts(served.stripe)

    _later(served, stripe_clock, TWO_DAYS)
    again = _top_up(served, request, "order-1")

    assert (again.status_code, again.json()) == (200, first.json())
    assert len(_intents(served.stripe)) == 1
    assert _intent_posts(served.stripe) == posts
    fresh = _top_up(served, request, "order-2")
    assert fresh.status_code == 200
    assert len(_intents(served.stripe)) == 2


def test_the_answer_survives_a_restart(
    make_served: Callable[..., Served], stripe_clock: Clock
) -> None:
    before = make_served()
    customer = _customer(before.stripe)
    request = {"customer_id": customer, "amount": "7.00", "currency": "usd"}
    first = _top_up(before, request, "order-restart")
    assert first.status_code == 200

    after = make_served()
    _later(after, stripe_clock, TWO_DAYS)
    again = _top_up(after, request, "order-restart")
    assert (again.status_code, again.json()) == (200, first.json())
    assert len(_intents(after.stripe)) == 1


def test_a_decline_is_kept_for_its_key(served: Served, stripe_clock: Clock) -> None:
    customer = served.stripe.add_customer(
        metadata={"moesif_company_id": "co_1", "moesif_subscription_id": "sub_m1"}
    )
    served.stripe.set_default_payment_method(customer, "pm_card_chargeDeclined")
    request = {"customer_id": customer, "amount": "5.00", "currency": "usd"}
    first = _top_up(served, request, "order-declined")
    assert first.status_code == 402
    _later(served, stripe_clock, TWO_DAYS)
    again = _top_up(served, request, "order-declined")
    assert (again.status_code, again.json()) == (402, first.json())
    assert len(_intents(served.stripe)) == 1


@pytest.mark.parametrize(
    "change",
    [{"customer_id": "other"}, {"amount": "25.01"}, {"currency": "eur"}],
    ids=["customer", "amount", "currency"],
)
def test_the_same_key_with_another_request_is_409_and_charges_nothing(
    served: Served, stripe_clock: Clock, change: dict[str, str]
) -> None:
    customer = _customer(served.stripe)
    other = _customer(served.stripe)
    request = {"customer_id": customer, "amount": "25.00", "currency": "usd"}
    assert _top_up(served, request, "order-9").status_code == 200
    posts = len(served.stripe.requests)

    changed = {**request, **change}
    if change.get("customer_id"):
        changed["customer_id"] = other
    for moved in (timedelta(0), TWO_DAYS):
        _later(served, stripe_clock, moved)
        answer = _top_up(served, changed, "order-9")
        assert answer.status_code == 409
        assert answer.json()["reason"] == "idempotency_key_reused"
        assert "nothing was charged" in answer.json()["error"]
    assert len(_intents(served.stripe)) == 1
    assert len(served.stripe.requests) == posts


def test_without_a_key_each_call_is_a_new_charge(served: Served) -> None:
    customer = _customer(served.stripe)
    request = {"customer_id": customer, "amount": "1.00", "currency": "usd"}
    assert _top_up(served, request, None).status_code == 200
    assert _top_up(served, request, None).status_code == 200
    assert len(_intents(served.stripe)) == 2
    with served.sessions() as session:
        assert session.scalars(select(TopUpKey)).all() == []


def test_simultaneous_requests_with_one_key_charge_once(served: Served) -> None:
    customer = _customer(served.stripe)
    request = {"customer_id": customer, "amount": "3.00", "currency": "usd"}
    served.stripe.delay_next(0.5)  # the first request's customer lookup: the others arrive
    answers: list[httpx.Response] = []
    start = threading.Barrier(8)

    def send() -> None:
        start.wait()
        answers.append(_top_up(served, request, "order-race"))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(_intents(served.stripe)) == 1
    [intent] = _intents(served.stripe)
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses.count(200) >= 1
    assert statuses.count(409) >= 1
    assert set(statuses) <= {200, 409}
    assert _intent_posts(served.stripe) == 1
    for answer in answers:
        if answer.status_code == 200:
            assert answer.json()["payment_intent_id"] == intent["id"]
        else:
            assert answer.json()["reason"] == "idempotency_key_in_use"
    again = _top_up(served, request, "order-race")
    assert (again.status_code, again.json()["payment_intent_id"]) == (200, intent["id"])


def _wanted(customer: str, minor: int = 1200) -> TopUpRequest:
    return TopUpRequest(customer, minor, "usd")


def test_a_crash_between_storing_and_charging_resumes_with_one_charge(
    served: Served, stripe_clock: Clock
) -> None:
    customer = _customer(served.stripe)
    topup_keys.claim(served.sessions, "order-crash", _wanted(customer), served.clock())
    request = {"customer_id": customer, "amount": "12.00", "currency": "usd"}

    busy = _top_up(served, request, "order-crash")
    assert (busy.status_code, busy.json()["reason"]) == (409, "idempotency_key_in_use")
    assert _intents(served.stripe) == []

    _later(served, stripe_clock, topup_keys.LEASE + timedelta(seconds=1))
    resumed = _top_up(served, request, "order-crash")
    assert resumed.status_code == 200
    assert len(_intents(served.stripe)) == 1


def test_a_crash_after_charging_resumed_days_later_finds_the_charge(
    served: Served, stripe_clock: Clock
) -> None:
    customer = _customer(served.stripe)
    wanted = _wanted(customer)
    topup_keys.claim(served.sessions, "order-charged", wanted, served.clock())
    charging = TopUps(
        served.sessions,
        stripe_client(served.stripe),
        destinations=served.worker._destinations,
        clock=served.clock,
        queued=lambda: None,
    )
    charged = charging.top_up(wanted, "order-charged")  # then the process dies unanswered
    assert charged.status == 200
    [intent] = _intents(served.stripe)

    _later(served, stripe_clock, TWO_DAYS)  # Stripe has forgotten the idempotency key
    request = {"customer_id": customer, "amount": "12.00", "currency": "usd"}
    resumed = _top_up(served, request, "order-charged")
    assert resumed.status_code == 200
    assert resumed.json()["payment_intent_id"] == intent["id"]
    assert len(_intents(served.stripe)) == 1


def test_stripe_down_leaves_the_key_to_a_retry(served: Served) -> None:
    customer = _customer(served.stripe)
    request = {"customer_id": customer, "amount": "2.00", "currency": "usd"}
    served.stripe.fail_next(500, count=10)
    failed = _top_up(served, request, "order-retry")
    assert failed.status_code == 502
    served.stripe.clear_faults()
    retried = _top_up(served, request, "order-retry")
    assert retried.status_code == 200
    assert len(_intents(served.stripe)) == 1


def test_a_key_that_cannot_be_stored_charges_nothing(
    make_served: Callable[..., Served], tmp_path: Path
) -> None:
    broken = sessionmaker(make_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}"))
    served = make_served(session_factory=broken)
    customer = _customer(served.stripe)
    request = {"customer_id": customer, "amount": "2.00", "currency": "usd"}
    answer = _top_up(served, request, "order-nodb")
    assert answer.status_code == 503
    assert "nothing was charged" in answer.json()["error"]
    assert _intents(served.stripe) == []


def test_keys_are_stored_with_the_request_hash_and_answer(served: Served) -> None:
    customer = _customer(served.stripe)
    request = {"customer_id": customer, "amount": "4.00", "currency": "usd"}
    answer = _top_up(served, request, "order-row")
    with served.sessions() as session:
        row = session.scalars(select(TopUpKey)).one()
    assert (row.idempotency_key, row.customer_id, row.answer_status) == (
        "order-row",
        customer,
        200,
    )
    assert len(row.request_hash) == 64
    assert row.answer_body is not None
    assert answer.json()["payment_intent_id"] in row.answer_body
