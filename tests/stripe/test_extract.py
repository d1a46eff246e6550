"""The extractor and client over real HTTP to the fake Stripe, and storing what they find."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
import stripe
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from reconcile.config import Secret
from reconcile.db import expected as expected_module
from reconcile.db.engine import make_engine, upgrade_to_head
from reconcile.db.expected import store_expected
from reconcile.db.expected_frames import expected_frame
from reconcile.db.models import ExpectedRow
from reconcile.domain.times import Window
from reconcile.domain.values import EXPECTED_COLUMNS, ExpectedEntry
from reconcile.domain.vocab import EntryType, Source
from reconcile.errors import CredentialsRejected, StripeUnavailable
from reconcile.fakes.stripe import COLLECTIONS, FakeStripe
from reconcile.retry import RateLimiter
from reconcile.stripe.client import (
    STRIPE_RETRY_POLICY,
    Answer,
    PacedHTTPClient,
    attempt_delay,
    rate_limiter,
    stripe_retry_delay,
)
from reconcile.stripe.extract import ExtractProgress, extract, split_window
from tests.stripe.conftest import API_KEY, ATTEMPTS, T0

SINCE = T0 - timedelta(days=1)
UNTIL = T0 + timedelta(days=3)
BASIL = "2025-03-31.basil"
MakeClient = Callable[..., stripe.StripeClient]


def by_id(client: stripe.StripeClient, **options: Any) -> dict[str, ExpectedEntry]:
    found = list(
        extract(client, options.pop("since", SINCE), options.pop("until", UNTIL), **options)
    )
    ids = [entry.transaction_id for entry in found]
    assert len(ids) == len(set(ids)), "an entry was yielded twice"
    return {entry.transaction_id: entry for entry in found}


def mapped_customer(fake: FakeStripe, company: str = "acme", subscription: str = "sub_m") -> str:
    return fake.add_customer(
        metadata={"moesif_company_id": company, "moesif_subscription_id": subscription}
    )


# -- contract section 4, row by row -------------------------------------------------------------


def test_a_topup_is_a_credit_of_the_amount_received(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    customer = mapped_customer(fake_stripe)
    payment = fake_stripe.add_payment_intent(customer, 2500, currency="EUR", created=T0)
    assert by_id(client) == {
        payment: ExpectedEntry(
            transaction_id=payment,
            source=Source.TOPUP,
            entry_type=EntryType.CREDIT,
            amount_minor=2500,
            currency="eur",
            created_at=T0,
            stripe_object_id=payment,
            topup_id=payment,
            stripe_customer_id=customer,
            company_id="acme",
            subscription_id="sub_m",
        )
    }


def test_full_and_partial_refunds_are_debits_by_refund_id(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    customer = mapped_customer(fake_stripe)
    payment = fake_stripe.add_payment_intent(customer, 2000, created=T0)
    partial = fake_stripe.add_refund(payment, 500, created=T0 + timedelta(hours=1))
    rest = fake_stripe.add_refund(
        payment, created=T0 + timedelta(hours=2), name_payment_intent=False
    )
    found = by_id(client)
    assert [(found[r].entry_type, found[r].amount_minor) for r in (partial, rest)] == [
        (EntryType.DEBIT, 500),
        (EntryType.DEBIT, 1500),
    ]
    assert {found[r].source for r in (partial, rest)} == {Source.REFUND}
    assert {
        (found[r].topup_id, found[r].company_id, found[r].subscription_id) for r in (partial, rest)
    } == {(payment, "acme", "sub_m")}
    assert found[partial].created_at == T0 + timedelta(hours=1)


def test_dispute_withdrawal_and_reinstatement_by_balance_transaction_id(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    payment = fake_stripe.add_payment_intent(mapped_customer(fake_stripe), 3000, created=T0)
    dispute = fake_stripe.add_dispute(payment, 3000, created=T0 + timedelta(hours=5))
    reversal = fake_stripe.reinstate_dispute(dispute, created=T0 + timedelta(days=1))
    withdrawal = next(
        t["id"]
        for t in fake_stripe.objects("balance_transaction")
        if t["reporting_category"] == "dispute"
    )
    found = by_id(client)
    assert set(found) == {payment, withdrawal, reversal}
    assert (
        found[withdrawal].source,
        found[withdrawal].entry_type,
        found[withdrawal].amount_minor,
    ) == (
        Source.DISPUTE,
        EntryType.DEBIT,
        3000,
    )
    assert (found[reversal].source, found[reversal].entry_type, found[reversal].amount_minor) == (
        Source.DISPUTE_REVERSAL,
        EntryType.CREDIT,
        3000,
    )
    assert found[withdrawal].stripe_object_id == dispute
    assert found[reversal].topup_id == payment
    assert found[reversal].created_at == T0 + timedelta(days=1)


def test_a_failed_refund_returns_its_money_as_a_credit(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    payment = fake_stripe.add_payment_intent(mapped_customer(fake_stripe), 4000, created=T0)
    refund = fake_stripe.add_refund(payment, 1000, created=T0 + timedelta(hours=1))
    failure = fake_stripe.fail_refund(refund, created=T0 + timedelta(hours=3))
    found = by_id(client)
    assert (found[failure].source, found[failure].entry_type, found[failure].amount_minor) == (
        Source.REFUND_FAILURE,
        EntryType.CREDIT,
        1000,
    )
    assert found[failure].stripe_object_id == refund
    # The refund's debit still counts, so that debit and credit cancel out: net 4000.
    assert found[refund].entry_type == EntryType.DEBIT
    net = sum(
        e.amount_minor * (1 if e.entry_type == EntryType.CREDIT else -1) for e in found.values()
    )
    assert net == 4000


# -- what is not an entry -----------------------------------------------------------------------


def test_exclusions(fake_stripe: FakeStripe, client: stripe.StripeClient) -> None:
    customer = mapped_customer(fake_stripe)
    topup = fake_stripe.add_payment_intent(customer, 1000, created=T0)
    fake_stripe.add_payment_intent(None, 1000, created=T0)
    fake_stripe.add_payment_intent(customer, 1000, metadata={"moesif_topup": "False"}, created=T0)
    fake_stripe.add_payment_intent(customer, 1000, status="processing", created=T0)
    fake_stripe.add_payment_intent(customer, 1000, status="requires_payment_method", created=T0)
    fake_stripe.add_payment_intent(customer, 1000, status="canceled", created=T0)
    fake_stripe.add_refund(topup, 100, status="pending", created=T0)
    fake_stripe.add_refund(topup, 100, status="canceled", created=T0)
    assert set(by_id(client)) == {topup}


@pytest.mark.parametrize("version", ["2025-02-24.acacia", BASIL])
def test_invoice_payments_and_their_movements_are_not_topups(
    fake_stripe: FakeStripe, make_client: MakeClient, version: str
) -> None:
    client = make_client(stripe_api_version=version)
    customer = mapped_customer(fake_stripe)
    topup = fake_stripe.add_payment_intent(customer, 1000, created=T0)
    billed = fake_stripe.add_payment_intent(customer, 9900, invoice="in_123", created=T0)
    fake_stripe.add_refund(billed, 900, created=T0)
    fake_stripe.add_dispute(billed, 9000, created=T0)
    assert set(by_id(client)) == {topup}
    asked = [r.query for r in fake_stripe.requests if r.path == "/v1/invoice_payments"]
    if version == BASIL:
        assert {q["payment[payment_intent]"] for q in asked} == {topup, billed}
        assert {q["payment[type]"] for q in asked} == {"payment_intent"}
    else:
        assert asked == []
    assert {r.stripe_version for r in fake_stripe.requests} == {version}


# -- mapping ------------------------------------------------------------------------------------


def test_every_mapping_path(fake_stripe: FakeStripe, client: stripe.StripeClient) -> None:
    named = fake_stripe.add_customer(metadata={"moesif_company_id": "acme"})
    fake_stripe.add_subscription(named)
    fake_stripe.add_subscription(named)
    by_payment = fake_stripe.add_payment_intent(
        named, 100, metadata={"moesif_subscription_id": "sub_pi"}, created=T0
    )
    by_customer = fake_stripe.add_payment_intent(
        mapped_customer(fake_stripe, "beta", "sub_cus"), 100, created=T0
    )
    single = fake_stripe.add_customer()
    only = fake_stripe.add_subscription(single)
    fake_stripe.add_subscription(single, status="canceled")
    by_stripe = fake_stripe.add_payment_intent(single, 100, created=T0)
    none = fake_stripe.add_customer()
    fake_stripe.add_subscription(none, status="canceled")
    unmapped_none = fake_stripe.add_payment_intent(none, 100, created=T0)
    several = fake_stripe.add_customer(metadata={"moesif_company_id": "gamma"})
    fake_stripe.add_subscription(several)
    # Only "canceled" ends a subscription (contract section 4), "incomplete_expired" counts.
    fake_stripe.add_subscription(several, status="incomplete_expired")
    unmapped_several = fake_stripe.add_payment_intent(several, 100, created=T0)
    refund = fake_stripe.add_refund(unmapped_several, 50, created=T0)
    found = by_id(client)

    def where(payment: str) -> tuple[str | None, str | None, str | None]:
        return (
            found[payment].company_id,
            found[payment].subscription_id,
            found[payment].unmapped_reason,
        )

    assert where(by_payment) == ("acme", "sub_pi", None)
    assert where(by_customer) == ("beta", "sub_cus", None)
    assert where(by_stripe) == (single, only, None)
    assert where(unmapped_none) == (
        None,
        None,
        f"customer {none} has no Moesif subscription id and no Stripe subscription that is not "
        "canceled",
    )
    assert where(unmapped_several) == (
        None,
        None,
        f"customer {several} has no Moesif subscription id and 2 Stripe subscriptions that are "
        "not canceled",
    )
    assert where(refund) == where(unmapped_several)
    assert found[refund].stripe_customer_id == several
    subscription_lists = [
        r.query["customer"] for r in fake_stripe.requests if r.path == "/v1/subscriptions"
    ]
    assert sorted(subscription_lists) == sorted([single, none, several])
    assert {r.query["status"] for r in fake_stripe.requests if r.path == "/v1/subscriptions"} == {
        "all"
    }


def test_company_filter_applies_after_mapping(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    acme = fake_stripe.add_payment_intent(mapped_customer(fake_stripe, "acme"), 100, created=T0)
    fake_stripe.add_payment_intent(mapped_customer(fake_stripe, "beta"), 100, created=T0)
    plain = fake_stripe.add_customer()
    by_customer_id = fake_stripe.add_payment_intent(plain, 100, created=T0)
    unmapped = fake_stripe.add_customer(metadata={"moesif_company_id": "acme"})
    unmapped_acme = fake_stripe.add_payment_intent(unmapped, 100, created=T0)
    assert set(by_id(client, companies=["acme", plain])) == {acme, by_customer_id, unmapped_acme}


# -- money and time -----------------------------------------------------------------------------


def test_zero_and_three_decimal_currencies_stay_in_minor_units(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    customer = mapped_customer(fake_stripe)
    yen = fake_stripe.add_payment_intent(customer, 5000, currency="jpy", created=T0)
    dinar = fake_stripe.add_payment_intent(customer, 1234, currency="kwd", created=T0)
    refund = fake_stripe.add_refund(dinar, 1, created=T0)
    dispute = fake_stripe.add_dispute(yen, 5000, created=T0, settled=(3312, "usd"))
    withdrawal = next(
        t["id"] for t in fake_stripe.objects("balance_transaction") if t["source"] == dispute
    )
    found = by_id(client)
    assert (found[yen].amount_minor, found[yen].currency) == (5000, "jpy")
    assert (found[dinar].amount_minor, found[dinar].currency) == (1234, "kwd")
    assert (found[refund].amount_minor, found[refund].currency) == (1, "kwd")
    # Settled in USD, but the customer's money was yen: the dispute's own amount counts.
    assert (found[withdrawal].amount_minor, found[withdrawal].currency) == (5000, "jpy")
    assert all(isinstance(e.amount_minor, int) for e in found.values())
    assert all(e.created_at.tzinfo == UTC for e in found.values())


def test_a_refund_after_the_window_of_its_payment(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    customer = mapped_customer(fake_stripe)
    old = fake_stripe.add_payment_intent(customer, 800, created=T0 - timedelta(days=30))
    first = fake_stripe.add_refund(old, 300, created=T0)
    second = fake_stripe.add_refund(old, 200, created=T0 + timedelta(hours=1))
    found = by_id(client)
    assert set(found) == {first, second}
    assert (found[first].topup_id, found[first].company_id) == (old, "acme")
    fetched = [r.path for r in fake_stripe.requests if r.path == f"/v1/payment_intents/{old}"]
    assert fetched == [], "the payment comes expanded with its refunds, never fetched"


def test_the_window_is_half_open_to_the_second(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    customer = mapped_customer(fake_stripe)
    at_since = fake_stripe.add_payment_intent(customer, 1, created=T0)
    fake_stripe.add_payment_intent(customer, 2, created=T0 - timedelta(seconds=1))
    fake_stripe.add_payment_intent(customer, 3, created=T0 + timedelta(days=1))
    last = fake_stripe.add_payment_intent(customer, 4, created=T0 + timedelta(days=1, seconds=-1))
    assert set(by_id(client, since=T0, until=T0 + timedelta(days=1))) == {at_since, last}
    # A since between whole seconds starts at the next whole second.
    assert set(
        by_id(client, since=T0 + timedelta(microseconds=1), until=T0 + timedelta(days=1))
    ) == {last}


def test_long_windows_are_read_in_slices_concurrently(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    customer = mapped_customer(fake_stripe)
    payments = [
        fake_stripe.add_payment_intent(
            customer, 100 + day, created=T0 + timedelta(days=day, hours=12)
        )
        for day in range(10)
    ]
    seen: list[ExtractProgress] = []
    found = list(extract(client, T0, T0 + timedelta(days=10), progress=seen.append, workers=4))
    # Slices are handed over as they are read, in no set order; each entry comes once.
    assert sorted(e.transaction_id for e in found) == sorted(payments)
    assert [p.slices_done for p in seen] == list(range(1, 11))
    assert {p.slices_total for p in seen} == {10}
    assert seen[-1].entries == 10
    assert sum(1 for r in fake_stripe.requests if r.path == "/v1/payment_intents") == 10
    assert [
        (w.since, w.until)
        for w in split_window(Window(T0, T0 + timedelta(hours=36)), timedelta(days=1))
    ] == [
        (T0, T0 + timedelta(days=1)),
        (T0 + timedelta(days=1), T0 + timedelta(hours=36)),
    ]


def test_pagination_across_many_pages_loses_and_repeats_nothing(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    customer = mapped_customer(fake_stripe)
    payments = {
        fake_stripe.add_payment_intent(customer, 100, created=T0 + timedelta(seconds=i // 3))
        for i in range(250)
    }
    found = by_id(client)
    assert set(found) == payments
    pages = [r.query for r in fake_stripe.requests if r.path == "/v1/payment_intents"]
    in_window = [q for q in pages if q["created[gte]"] == str(int(T0.timestamp()))]
    assert len(in_window) == 3
    assert {q["limit"] for q in pages} == {"100"}
    assert ["starting_after" in q for q in in_window] == [False, True, True]


# -- retries, rate limit, failures --------------------------------------------------------------


def test_retry_decision() -> None:
    policy = STRIPE_RETRY_POLICY
    assert stripe_retry_delay(policy, 429, {}, 1) == 0.5
    assert stripe_retry_delay(policy, 500, {}, 2) == 1.0
    assert stripe_retry_delay(policy, 409, {}, 1) == 0.5
    assert stripe_retry_delay(policy, None, {}, 1) == 0.5
    assert stripe_retry_delay(policy, 429, {"Retry-After": "3"}, 1) == 3.0
    assert stripe_retry_delay(policy, 429, {"stripe-should-retry": "false"}, 1) is None
    assert stripe_retry_delay(policy, 400, {"Stripe-Should-Retry": "true"}, 1) == 0.5
    assert stripe_retry_delay(policy, 400, {}, 1) is None
    assert stripe_retry_delay(policy, 404, {}, 1) is None
    assert stripe_retry_delay(policy, 503, {}, ATTEMPTS) is None


def test_attempt_decision() -> None:
    policy = STRIPE_RETRY_POLICY
    assert attempt_delay(policy, Answer(b'{"id": "ch_1"}', 200, {}, True), 1) is None
    assert attempt_delay(policy, Answer(b"<html>", 200, {"Retry-After": "9"}, False), 1) == 0.5
    assert attempt_delay(policy, Answer(b"{}", 503, {}, False), 2) == 1.0
    assert attempt_delay(policy, Answer(b"{}", 402, {}, False), 1) is None
    assert attempt_delay(policy, stripe.APIConnectionError("gone", should_retry=True), 1) == 0.5
    assert attempt_delay(policy, stripe.APIConnectionError("gone", should_retry=False), 1) is None
    lost = stripe.APIConnectionError("gone", should_retry=True)
    assert attempt_delay(policy, lost, policy.max_attempts) is None


@pytest.mark.parametrize("headers", [None, {"Stripe-Should-Retry": "true"}])
def test_429_is_retried_with_backoff(
    fake_stripe: FakeStripe,
    client: stripe.StripeClient,
    slept: list[float],
    headers: dict[str, str] | None,
) -> None:
    payment = fake_stripe.add_payment_intent(mapped_customer(fake_stripe), 100, created=T0)
    fake_stripe.fail_next(429, count=2, headers=headers)
    assert set(by_id(client, since=T0, until=T0 + timedelta(hours=1))) == {payment}
    assert [r.status for r in fake_stripe.requests][:3] == [429, 429, 200]
    assert len(slept) == 2
    assert 0.25 <= slept[0] <= 0.5
    assert 0.5 <= slept[1] <= 1.0


def test_retry_after_is_waited_in_full(
    fake_stripe: FakeStripe, client: stripe.StripeClient, slept: list[float]
) -> None:
    fake_stripe.fail_next(429, headers={"Retry-After": "2"})
    assert list(extract(client, T0, T0 + timedelta(hours=1))) == []
    assert slept == [2.0]


def test_5xx_is_retried_then_fails_with_the_request_id(
    fake_stripe: FakeStripe, client: stripe.StripeClient, slept: list[float]
) -> None:
    fake_stripe.fail_next(500, count=ATTEMPTS)
    with pytest.raises(StripeUnavailable) as failure:
        list(extract(client, T0, T0 + timedelta(hours=1)))
    assert len(fake_stripe.requests) == ATTEMPTS
    assert len(slept) == ATTEMPTS - 1
    message = str(failure.value)
    assert "HTTP 500" in message
    assert "request req_fake" in message
    assert "\n" not in message
    assert API_KEY not in message


def test_should_retry_false_is_not_retried(
    fake_stripe: FakeStripe, client: stripe.StripeClient, slept: list[float]
) -> None:
    fake_stripe.fail_next(429, headers={"Stripe-Should-Retry": "false"})
    with pytest.raises(StripeUnavailable, match="HTTP 429"):
        list(extract(client, T0, T0 + timedelta(hours=1)))
    assert len(fake_stripe.requests) == 1
    assert slept == []


def test_a_bad_key_fails_once_in_one_clean_line(make_client: MakeClient) -> None:
    client = make_client(stripe_api_key=Secret("sk_test_wrongKEYwrongKEY1234"))
    with pytest.raises(CredentialsRejected) as failure:
        list(extract(client, T0, T0 + timedelta(hours=1)))
    assert str(failure.value) == "Stripe refused the API key (HTTP 401)"
    assert failure.value.__cause__ is None
    assert "sk_test" not in repr(failure.value)


def test_a_bad_key_is_not_retried(
    fake_stripe: FakeStripe, make_client: MakeClient, slept: list[float]
) -> None:
    client = make_client(stripe_api_key=Secret("sk_test_wrongKEYwrongKEY1234"))
    with pytest.raises(CredentialsRejected):
        list(extract(client, T0, T0 + timedelta(hours=1)))
    assert [r.status for r in fake_stripe.requests] == [401]
    assert slept == []


def test_requests_are_paced_by_the_rate_limit(fake_stripe: FakeStripe) -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(2, 1.0, clock=lambda: now[0], sleep=sleep)
    client = stripe.StripeClient(
        API_KEY,
        base_addresses={"api": fake_stripe.base_url},
        max_network_retries=0,
        http_client=PacedHTTPClient(limiter, sleep=sleep, rng=random.Random(1)),
    )
    fake_stripe.fail_next(429)
    for _ in range(2):
        client.v1.customers.list()
    assert len(fake_stripe.requests) == 3
    # Two requests fit in the first second; the retry's jitter moved the clock, the third waits.
    assert waits[0] <= 0.5
    assert sum(waits) >= 1.0
    assert rate_limiter(2.5).limit == 2
    assert rate_limiter(2.5).period == pytest.approx(0.8)
    assert (rate_limiter(0.5).limit, rate_limiter(0.5).period) == (1, 2.0)


# -- storage ------------------------------------------------------------------------------------


def entry(transaction_id: str, amount: int = 100, **changes: Any) -> ExpectedEntry:
    values: dict[str, Any] = {
        "transaction_id": transaction_id,
        "source": Source.TOPUP,
        "entry_type": EntryType.CREDIT,
        "amount_minor": amount,
        "currency": "usd",
        "created_at": T0,
        "stripe_object_id": transaction_id,
        "topup_id": transaction_id,
        "stripe_customer_id": "cus_1",
        "company_id": "acme",
        "subscription_id": "sub_1",
        "unmapped_reason": None,
    }
    values.update(changes)
    return ExpectedEntry(**values)


def test_store_expected_is_an_idempotent_upsert(engine: Engine) -> None:
    first_run = datetime(2025, 1, 11, tzinfo=UTC)
    with Session(engine) as session:
        stored = store_expected(
            session, [entry("pi_1"), entry("pi_2"), entry("pi_1")], run_id="run-1", now=first_run
        )
        session.commit()
    assert stored == 3
    later = first_run + timedelta(days=1)
    for _ in range(2):
        with Session(engine) as session:
            store_expected(
                session,
                [entry("pi_1", 150, company_id=None, unmapped_reason="why"), entry("pi_2")],
                run_id="run-2",
                now=later,
            )
            session.commit()
    with Session(engine) as session:
        rows = {row.transaction_id: row for row in session.scalars(select(ExpectedRow))}
    assert set(rows) == {"pi_1", "pi_2"}
    assert (rows["pi_1"].first_seen_run_id, rows["pi_1"].last_seen_run_id) == ("run-1", "run-2")
    assert (rows["pi_1"].amount_minor, rows["pi_1"].company_id, rows["pi_1"].unmapped_reason) == (
        150,
        None,
        "why",
    )
    assert rows["pi_1"].updated_at == later
    assert rows["pi_2"].created_at == T0


def test_store_expected_writes_every_batch_alike(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(expected_module, "BATCH_SIZE", 2)
    later = datetime(2025, 1, 11, 12, 30, 15, 250, tzinfo=UTC)
    created = [T0 + timedelta(seconds=n, microseconds=n) for n in range(5)]
    with Session(engine) as session:
        stored = store_expected(
            session,
            [entry(f"pi_{n}", 100 + n, created_at=created[n]) for n in range(5)],
            run_id="run-1",
            now=later,
            stripe_account="acct_1",
        )
        session.commit()
    with Session(engine) as session:
        rows = sorted(session.scalars(select(ExpectedRow)), key=lambda row: row.transaction_id)
    assert stored == 5
    assert [(row.transaction_id, row.amount_minor, row.created_at) for row in rows] == [
        (f"pi_{n}", 100 + n, created[n]) for n in range(5)
    ]
    assert {(row.first_seen_run_id, row.last_seen_run_id) for row in rows} == {("run-1", "run-1")}
    assert {(row.updated_at, row.stripe_account) for row in rows} == {(later, "acct_1")}


def test_store_expected_does_not_commit(engine: Engine) -> None:
    with Session(engine) as session:
        store_expected(session, [entry("pi_1")], run_id="run-1", now=T0)
        session.rollback()
    with Session(engine) as session:
        assert session.scalars(select(ExpectedRow)).all() == []


def test_expected_frame_reads_a_window(engine: Engine) -> None:
    with Session(engine) as session:
        store_expected(
            session,
            [
                entry("pi_in", 100),
                entry("pi_late", 2**40, created_at=T0 + timedelta(days=1), company_id="beta"),
                entry("pi_before", created_at=T0 - timedelta(seconds=1)),
                entry("pi_at_until", created_at=T0 + timedelta(days=2)),
            ],
            run_id="run-1",
            now=T0,
        )
        session.commit()
    with Session(engine) as session:
        frame = expected_frame(session, T0, T0 + timedelta(days=2))
        only_beta = expected_frame(session, T0, T0 + timedelta(days=2), companies=["beta"])
        empty = expected_frame(session, T0 + timedelta(days=5), T0 + timedelta(days=6))
    assert list(frame.columns) == EXPECTED_COLUMNS
    assert list(frame["transaction_id"]) == ["pi_in", "pi_late"]
    assert list(frame["amount_minor"]) == [100, 2**40]
    assert frame["amount_minor"].dtype == "int64"
    assert isinstance(frame["created_at"].dtype, pd.DatetimeTZDtype)
    assert str(frame["created_at"].dt.tz) == "UTC"
    assert frame["created_at"].iloc[0] == pd.Timestamp(T0)
    assert list(frame["source"]) == ["topup", "topup"]
    assert list(only_beta["transaction_id"]) == ["pi_late"]
    assert list(empty.columns) == EXPECTED_COLUMNS
    assert len(empty) == 0
    assert empty["amount_minor"].dtype == "int64"


def test_extracted_entries_round_trip_through_storage(
    fake_stripe: FakeStripe, client: stripe.StripeClient, sqlite_url: str
) -> None:
    customer = mapped_customer(fake_stripe)
    payment = fake_stripe.add_payment_intent(customer, 1234, currency="kwd", created=T0)
    fake_stripe.add_refund(payment, 234, created=T0 + timedelta(hours=1))
    engine = make_engine(sqlite_url)
    upgrade_to_head(engine)
    with Session(engine) as session:
        store_expected(session, extract(client, SINCE, UNTIL), run_id="run-1", now=T0)
        session.commit()
        frame = expected_frame(session, SINCE, UNTIL)
    engine.dispose()
    assert sorted(
        zip(frame["entry_type"], frame["amount_minor"], frame["currency"], strict=True)
    ) == [
        ("credit", 1234, "kwd"),
        ("debit", 234, "kwd"),
    ]


def test_a_server_without_invoice_payments_links_no_invoices_but_honours_named_ones(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    served = set(COLLECTIONS) - {"invoice_payments"}
    with FakeStripe(api_key=API_KEY, clock=lambda: T0, serve=served) as bare:
        client = make_client(stripe_api_version=BASIL, stripe_api_base=bare.base_url)
        customer = mapped_customer(bare)
        first = bare.add_payment_intent(customer, 1000, created=T0)
        second = bare.add_payment_intent(customer, 2000, created=T0)

        assert set(by_id(client)) == {first, second}

        asked = [r for r in bare.requests if r.path == "/v1/invoice_payments"]
    assert len(asked) == 1
    assert "no /v1/invoice_payments" in caplog.text
