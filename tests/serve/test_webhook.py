"""``POST /webhooks/stripe`` over real HTTP: signatures, recording, and every handled event."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from reconcile.db.engine import make_engine
from reconcile.db.models import WebhookEvent
from reconcile.fakes.moesif import Exchange, Verdict
from reconcile.fakes.stripe import FakeStripe, sign
from reconcile.posting.next_step import DEFAULT_REPORT_LAG
from reconcile.serve import inbox
from tests.serve.conftest import OLD_SECRET, SECRET, Served


def _mapped_customer(fake: FakeStripe) -> str:
    return fake.add_customer(
        metadata={"moesif_company_id": "co_1", "moesif_subscription_id": "sub_m1"}
    )


def _event_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(WebhookEvent)) or 0)


def _post(served: Served, body: str, header: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    with served.http() as http:
        return http.post("/webhooks/stripe", content=body.encode(), headers=headers).status_code


def _posted(served: Served) -> list[tuple[str, str, Decimal]]:
    return sorted(
        (body["transaction_id"], body["type"], body["amount"]) for body in served.moesif.posts
    )


def test_missing_bad_and_stale_signatures_are_400_and_record_nothing(served: Served) -> None:
    body = json.dumps({"id": "evt_x", "object": "event", "type": "customer.created"})
    stamp = int(time.time())
    assert _post(served, body, None) == 400
    assert _post(served, body, sign(body, "whsec_other", stamp)) == 400
    assert _post(served, body, "t=abc,v1=zz") == 400
    assert _post(served, body + " ", sign(body, SECRET, stamp)) == 400
    assert _post(served, body, sign(body, SECRET, stamp - 301)) == 400
    assert _event_count(served.sessions) == 0
    assert _post(served, body, sign(body, SECRET, stamp - 200)) == 200
    assert _event_count(served.sessions) == 1


def test_every_secret_in_rotation_is_accepted(make_served: Callable[..., Served]) -> None:
    served = make_served(secrets=(OLD_SECRET, SECRET))
    stamp = int(time.time())
    old = json.dumps({"id": "evt_old", "object": "event", "type": "customer.created"})
    new = json.dumps({"id": "evt_new", "object": "event", "type": "customer.created"})
    assert _post(served, old, sign(old, OLD_SECRET, stamp)) == 200
    assert _post(served, new, sign(new, SECRET, stamp)) == 200
    assert _event_count(served.sessions) == 2


def test_a_top_up_delivered_twice_is_recorded_once_and_credited_once(served: Served) -> None:
    customer = _mapped_customer(served.stripe)
    payment = served.stripe.add_payment_intent(customer, 1050)
    event_id = served.stripe.emit_event("payment_intent.succeeded", "payment_intent", payment)
    served.stripe.configure_webhook(
        f"{served.url}/webhooks/stripe", SECRET, sleep=lambda _s: None, duplicates=True
    )

    assert served.stripe.deliver() == [200, 200]
    assert _event_count(served.sessions) == 1
    assert served.worker.drain() == 1
    assert served.worker.drain() == 0

    assert _posted(served) == [(payment, "credit", Decimal("10.50"))]
    assert served.origins == [f"webhook:{event_id}"]
    row = inbox.status_of(served.sessions, event_id)
    assert row is not None
    assert row.status == "posted"


def test_every_handled_event_type_posts_its_entry(served: Served) -> None:
    fake = served.stripe
    customer = _mapped_customer(fake)
    first = fake.add_payment_intent(customer, 5000)
    refund = fake.add_refund(first, 1000)
    fake.emit_event("refund.created", "refund", refund)
    second_refund = fake.add_refund(first, 500)
    charge = fake.objects("refund")[-1]["charge"]
    fake.emit_event("charge.refunded", "charge", charge)
    failing = fake.add_refund(first, 700)
    failure = fake.fail_refund(failing)
    fake.emit_event("refund.updated", "refund", failing)
    disputed = fake.add_payment_intent(customer, 3000)
    dispute = fake.add_dispute(disputed)
    fake.emit_event("charge.dispute.funds_withdrawn", "dispute", dispute)
    reversal = fake.reinstate_dispute(dispute)
    fake.emit_event("charge.dispute.funds_reinstated", "dispute", dispute)
    withdrawal = fake.objects("dispute")[0]["balance_transactions"][0]

    assert set(fake.deliver()) == {200}
    served.worker.drain()

    assert _posted(served) == sorted(
        [
            (refund, "debit", Decimal("10.00")),
            (second_refund, "debit", Decimal("5.00")),
            (failing, "debit", Decimal("7.00")),
            (failure, "credit", Decimal("7.00")),
            (withdrawal, "debit", Decimal("30.00")),
            (reversal, "credit", Decimal("30.00")),
        ]
    )
    with served.sessions() as session:
        statuses = set(session.scalars(select(WebhookEvent.status)))
    assert statuses == {"posted"}


def test_an_unhandled_type_is_200_and_posts_nothing(served: Served) -> None:
    customer = _mapped_customer(served.stripe)
    event_id = served.stripe.emit_event("customer.created", "customer", customer)
    assert served.stripe.deliver() == [200]
    served.worker.drain()
    row = inbox.status_of(served.sessions, event_id)
    assert row is not None
    assert row.status == "ignored"
    assert served.moesif.posts == []


def test_a_payment_that_is_no_top_up_posts_nothing(served: Served) -> None:
    customer = _mapped_customer(served.stripe)
    payment = served.stripe.add_payment_intent(customer, 900, metadata={"moesif_topup": "false"})
    event_id = served.stripe.emit_event("payment_intent.succeeded", "payment_intent", payment)
    served.stripe.deliver()
    served.worker.drain()
    row = inbox.status_of(served.sessions, event_id)
    assert row is not None
    assert row.status == "ignored"
    assert served.moesif.posts == []


def test_an_unmapped_customer_is_recorded_unmapped_with_the_reason(served: Served) -> None:
    customer = served.stripe.add_customer()
    payment = served.stripe.add_payment_intent(customer, 1050)
    event_id = served.stripe.emit_event("payment_intent.succeeded", "payment_intent", payment)
    served.stripe.deliver()
    served.worker.drain()
    row = inbox.status_of(served.sessions, event_id)
    assert row is not None
    assert row.status == "unmapped"
    assert "no Stripe subscription" in (row.last_error or "")
    assert served.moesif.posts == []


def test_moesif_down_leaves_the_event_to_retry_after_a_backoff(served: Served) -> None:
    customer = _mapped_customer(served.stripe)
    payment = served.stripe.add_payment_intent(customer, 1050)
    event_id = served.stripe.emit_event("payment_intent.succeeded", "payment_intent", payment)
    served.stripe.deliver()
    served.moesif.fail_next(503, count=50)

    served.worker.drain()
    row = inbox.status_of(served.sessions, event_id)
    assert row is not None
    assert (row.status, row.attempts) == ("retry", 1)
    assert row.next_attempt_at > served.clock()
    assert served.worker.drain() == 0

    served.moesif.clear_faults()
    served.clock.moment += timedelta(hours=1)
    assert served.worker.drain() == 1
    assert _posted(served) == [(payment, "credit", Decimal("10.50"))]
    row = inbox.status_of(served.sessions, event_id)
    assert row is not None
    assert row.status == "posted"


def test_an_event_recorded_before_a_crash_is_posted_after_the_restart(
    make_served: Callable[..., Served],
) -> None:
    before = make_served()
    customer = _mapped_customer(before.stripe)
    payment = before.stripe.add_payment_intent(customer, 1050)
    before.stripe.emit_event("payment_intent.succeeded", "payment_intent", payment)
    assert before.stripe.deliver() == [200]
    assert before.moesif.posts == []

    after = make_served()
    assert after.worker.drain() == 1
    assert _posted(after) == [(payment, "credit", Decimal("10.50"))]


def test_an_event_that_cannot_be_recorded_is_500_and_stripe_retries(
    make_served: Callable[..., Served], tmp_path: Path
) -> None:
    broken = sessionmaker(make_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}"))
    served = make_served(session_factory=broken)
    slept: list[float] = []
    customer = _mapped_customer(served.stripe)
    served.stripe.emit_event("customer.created", "customer", customer)
    served.stripe.configure_webhook(
        f"{served.url}/webhooks/stripe", SECRET, sleep=slept.append, attempts=3
    )
    assert served.stripe.deliver() == [500]
    assert len(slept) == 2
    with served.http() as http:
        assert http.get("/healthz").status_code == 503


def test_healthz_is_ok_while_the_database_answers(served: Served) -> None:
    with served.http() as http:
        answer = http.get("/healthz")
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


def test_concurrent_duplicate_deliveries_record_each_event_once(served: Served) -> None:
    customer = _mapped_customer(served.stripe)
    payments = [served.stripe.add_payment_intent(customer, 100 + n) for n in range(8)]
    bodies = []
    for payment in payments:
        served.stripe.emit_event("payment_intent.succeeded", "payment_intent", payment)
    for event in served.stripe.events():
        bodies.append(json.dumps(event))
    statuses: list[int] = []
    stamp = int(time.time())

    def deliver(body: str) -> None:
        statuses.append(_post(served, body, sign(body, SECRET, stamp)))

    threads = [threading.Thread(target=deliver, args=(body,)) for body in bodies * 5]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 40
    assert _event_count(served.sessions) == 8
    served.worker.drain()
    assert sorted(post["transaction_id"] for post in served.moesif.posts) == sorted(payments)


def _lose_the_answer_of_the_next_post(served: Served, verdict: Verdict) -> None:
    def once(exchange: Exchange) -> Verdict | None:
        if exchange.method != "POST":
            return None
        served.moesif.on_request = None
        return verdict

    served.moesif.on_request = once


def _delivered_top_up(served: Served) -> tuple[str, str]:
    customer = _mapped_customer(served.stripe)
    payment = served.stripe.add_payment_intent(customer, 1050)
    event_id = served.stripe.emit_event("payment_intent.succeeded", "payment_intent", payment)
    assert served.stripe.deliver() == [200]
    return payment, event_id


def _retry_due(served: Served, event_id: str) -> None:
    """Move the clock to the event's next attempt."""
    row = inbox.status_of(served.sessions, event_id)
    assert row is not None
    assert row.status == "retry"
    served.clock.moment = max(served.clock.moment, row.next_attempt_at)


def test_a_retry_within_the_report_lag_never_resends_a_post_the_reports_lack(
    served: Served,
) -> None:
    """Moesif applied the POST, lost the answer, and its reports do not list the row yet."""
    payment, event_id = _delivered_top_up(served)
    served.moesif.unlisted.add(payment)
    _lose_the_answer_of_the_next_post(served, "apply_then_drop")
    sent_at = served.clock()

    for _ in range(3):
        served.worker.drain()
        _retry_due(served, event_id)
    assert served.clock() - sent_at < DEFAULT_REPORT_LAG, "every retry came within the lag"
    assert len(served.moesif.posts) == 1
    assert served.moesif.applied_counts() == {payment: 1}

    served.moesif.unlisted.clear()
    assert served.worker.drain() == 1
    row = inbox.status_of(served.sessions, event_id)
    assert row is not None
    assert row.status == "posted"
    assert served.moesif.applied_counts() == {payment: 1}


def test_a_retry_after_the_report_lag_resends_a_lost_post_exactly_once(served: Served) -> None:
    payment, event_id = _delivered_top_up(served)
    _lose_the_answer_of_the_next_post(served, "drop")
    sent_at = served.clock()

    served.worker.drain()
    _retry_due(served, event_id)
    served.worker.drain()
    assert served.moesif.posts == [], "a retry within the lag sends nothing"

    served.clock.moment = sent_at + DEFAULT_REPORT_LAG
    _retry_due(served, event_id)
    assert served.worker.drain() == 1
    served.clock.moment += timedelta(hours=1)
    served.worker.drain()

    assert _posted(served) == [(payment, "credit", Decimal("10.50"))]
    row = inbox.status_of(served.sessions, event_id)
    assert row is not None
    assert row.status == "posted"
