"""The event worker: stopping finishes the posting in flight; Stripe down means retry later."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from reconcile.domain.values import Entry
from reconcile.domain.vocab import EventStatus
from reconcile.fakes.stripe import FakeStripe
from reconcile.posting.outcome import Outcome, Result
from reconcile.serve import inbox
from reconcile.serve.destinations import Destinations
from reconcile.serve.worker import EventWorker
from tests.serve.conftest import stripe_client

NOW = datetime.now(UTC)


def _record_topup(fake: FakeStripe, sessions: sessionmaker[Session]) -> tuple[str, str]:
    customer = fake.add_customer(
        metadata={"moesif_company_id": "co_1", "moesif_subscription_id": "sub_m1"}
    )
    payment = fake.add_payment_intent(customer, 1050)
    event_id = fake.emit_event("payment_intent.succeeded", "payment_intent", payment)
    event = fake.events()[-1]
    assert inbox.record(sessions, event, json.dumps(event), NOW)
    return event_id, payment


def test_stopping_finishes_the_posting_in_flight(
    fake_stripe: FakeStripe, sessions: sessionmaker[Session], destinations: Destinations
) -> None:
    event_id, payment = _record_topup(fake_stripe, sessions)
    entered, release = threading.Event(), threading.Event()
    posted: list[str] = []

    def slow_post(order: Entry, origin: str) -> Outcome:
        entered.set()
        release.wait(30)
        posted.append(order.transaction_id)
        return Outcome(order.transaction_id, Result.POSTED)

    worker = EventWorker(
        sessions,
        stripe_client(fake_stripe),
        slow_post,
        destinations=destinations,
        clock=lambda: NOW,
    )
    worker.start()
    worker.wake()
    assert entered.wait(30)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    release.set()
    stopper.join(30)

    assert not stopper.is_alive()
    assert posted == [payment]
    row = inbox.status_of(sessions, event_id)
    assert row is not None
    assert row.status == "posted"


@pytest.mark.parametrize("status", [500, 503])
def test_stripe_unavailable_leaves_the_event_to_retry(
    fake_stripe: FakeStripe,
    sessions: sessionmaker[Session],
    destinations: Destinations,
    status: int,
) -> None:
    event_id, _payment = _record_topup(fake_stripe, sessions)
    calls: list[Entry] = []

    def post(order: Entry, origin: str) -> Outcome:
        calls.append(order)
        return Outcome(order.transaction_id, Result.POSTED)

    worker = EventWorker(
        sessions, stripe_client(fake_stripe), post, destinations=destinations, clock=lambda: NOW
    )
    fake_stripe.fail_next(status, count=100)
    assert worker.process(event_id) == EventStatus.RETRY
    row = inbox.status_of(sessions, event_id)
    assert row is not None
    assert "Stripe" in (row.last_error or "")
    assert calls == []
    assert inbox.due(sessions, NOW) == []
    assert inbox.due(sessions, NOW + inbox.backoff(1)) == [event_id]


def test_backoff_doubles_and_is_capped() -> None:
    assert [inbox.backoff(n).total_seconds() for n in (1, 2, 3)] == [5, 10, 20]
    assert inbox.backoff(40) == inbox.MAX_BACKOFF


def test_origins_name_the_caller() -> None:
    assert inbox.origin_of("evt_1") == "webhook:evt_1"
    assert inbox.origin_of("topup:pi_1") == "top-up:pi_1"
