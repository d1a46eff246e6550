"""Poison from Stripe: objects the job cannot interpret become unreadable, never a stopped run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import stripe
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from reconcile.config import Secret, Settings
from reconcile.db.expected import store_expected
from reconcile.db.models import ExpectedRow
from reconcile.domain.values import ExpectedEntry, Unreadable
from reconcile.domain.vocab import UnreadableSource
from reconcile.errors import RunFailed, StripeUnavailable
from reconcile.fakes.stripe import FakeStripe
from reconcile.retry import Deadline, DeadlineExceeded
from reconcile.stripe.client import build_stripe_client, is_json_object
from reconcile.stripe.extract import extract, extract_by_ids
from reconcile.stripe.mapping import movement_problem
from tests.stripe.conftest import API_KEY, T0

SINCE = T0 - timedelta(days=1)
UNTIL = T0 + timedelta(days=1)
MakeClient = Callable[..., stripe.StripeClient]


def _customer(fake: FakeStripe, company: str = "acme") -> str:
    return fake.add_customer(
        metadata={"moesif_company_id": company, "moesif_subscription_id": "sub_m"}
    )


def _read(client: stripe.StripeClient) -> tuple[list[ExpectedEntry], list[Unreadable]]:
    unreadable: list[Unreadable] = []
    entries = list(extract(client, SINCE, UNTIL, on_unreadable=unreadable.append))
    return entries, unreadable


POISON_PAYMENTS: list[tuple[str, dict[str, Any], str]] = [
    ("not ISO 4217", {"amount": 1234, "currency": "xyz"}, "not an ISO 4217 code"),
    ("negative", {"amount": -500}, "negative"),
    ("a fraction", {"amount": 12.5}, "not a whole number"),
    ("ten trillion dollars", {"amount": 10**15}, "more than 12 digits"),
    ("2^63", {"amount": 2**63}, "more than 12 digits"),
]


@pytest.mark.parametrize(("case", "fields", "reason"), POISON_PAYMENTS, ids=lambda v: str(v)[:20])
def test_a_poison_payment_is_unreadable_and_others_go_on(
    fake_stripe: FakeStripe,
    client: stripe.StripeClient,
    case: str,
    fields: dict[str, Any],
    reason: str,
) -> None:
    good = fake_stripe.add_payment_intent(_customer(fake_stripe, "good"), 700, created=T0)
    bad = fake_stripe.add_payment_intent(
        _customer(fake_stripe, "bad"),
        fields["amount"],
        currency=fields.get("currency", "usd"),
        created=T0 + timedelta(minutes=1),
    )
    entries, unreadable = _read(client)
    assert [entry.transaction_id for entry in entries] == [good]
    assert len(unreadable) == 1, case
    found = unreadable[0]
    assert (found.source, found.object_id, found.company_hint) == (
        UnreadableSource.STRIPE,
        bad,
        "bad",
    )
    assert reason in found.reason
    assert found.created_at == T0 + timedelta(minutes=1)
    assert found.transaction_id == bad


@pytest.mark.parametrize(
    ("company", "reason"),
    [("ac\x00me", "NUL byte"), ("ac\udc80me", "not valid Unicode")],
    ids=["nul", "lone-surrogate"],
)
def test_text_the_database_cannot_hold_is_unreadable(
    fake_stripe: FakeStripe, client: stripe.StripeClient, company: str, reason: str
) -> None:
    bad = fake_stripe.add_payment_intent(_customer(fake_stripe, company), 700, created=T0)
    entries, unreadable = _read(client)
    assert entries == []
    assert [item.object_id for item in unreadable] == [bad]
    assert reason in unreadable[0].reason
    assert "\x00" not in repr(unreadable[0])
    assert unreadable[0].company_hint is not None
    unreadable[0].company_hint.encode("utf-8")


def test_a_malformed_object_is_unreadable_not_a_crash(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    bad = fake_stripe.add_payment_intent(_customer(fake_stripe), 700, created=T0)
    # No public seeding makes an object this malformed: metadata that is not an object.
    fake_stripe._state.objects["payment_intent"][bad]["metadata"] = "not-an-object"
    entries, unreadable = _read(client)
    assert entries == []
    assert [item.object_id for item in unreadable] == [bad]


def test_a_zero_payment_is_nothing_not_unreadable(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    fake_stripe.add_payment_intent(_customer(fake_stripe), 0, created=T0)
    assert _read(client) == ([], [])


def test_by_id_reports_unreadable_objects_too(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    bad = fake_stripe.add_payment_intent(_customer(fake_stripe), 1234, currency="xyz", created=T0)
    unreadable: list[Unreadable] = []
    assert list(extract_by_ids(client, [bad], on_unreadable=unreadable.append)) == []
    assert [item.object_id for item in unreadable] == [bad]


def test_the_movement_rules_are_pure() -> None:
    assert movement_problem(100, "usd", {"id": "pi_1"}) is None
    assert movement_problem(100, "USD", {}) is None
    assert movement_problem(100, "jpy", {}) is None
    assert movement_problem(100, "us", {}) is not None
    assert movement_problem(True, "usd", {}) is not None
    assert movement_problem(10**12 - 1, "usd", {}) is None
    assert movement_problem(10**12, "usd", {}) is not None
    assert movement_problem(100, "usd", {"id": "a\x00"}) is not None


def test_ids_and_company_ids_of_any_length_are_stored(
    engine: Engine, fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    company = "c" * 500
    long_customer = "cus_" + "x" * 600
    fake_stripe.add_customer(
        id=long_customer,
        metadata={"moesif_company_id": company, "moesif_subscription_id": "s" * 500},
    )
    payment = fake_stripe.add_payment_intent(long_customer, 700, created=T0)
    entries, unreadable = _read(client)
    assert unreadable == []
    with Session(engine) as session:
        store_expected(session, entries, run_id="run-1", now=T0)
        session.commit()
        row = session.scalars(select(ExpectedRow)).one()
    assert (row.transaction_id, row.company_id, row.stripe_customer_id) == (
        payment,
        company,
        long_customer,
    )


# -- answers that are not Stripe's ----------------------------------------------------------


def test_a_json_array_where_an_object_belongs_is_stripe_unavailable(
    fake_stripe: FakeStripe, client: stripe.StripeClient, slept: list[float]
) -> None:
    fake_stripe.garble_next("array", count=100)
    with pytest.raises(StripeUnavailable, match="not a JSON object") as caught:
        _read(client)
    assert "\n" not in str(caught.value)
    assert len(slept) >= 4


@pytest.mark.parametrize("kind", ["html", "truncated", "array", "non_utf8"])
def test_a_spoiled_2xx_is_retried(
    fake_stripe: FakeStripe, client: stripe.StripeClient, slept: list[float], kind: str
) -> None:
    good = fake_stripe.add_payment_intent(_customer(fake_stripe), 700, created=T0)
    fake_stripe.garble_next(kind)
    entries, _ = _read(client)
    assert [entry.transaction_id for entry in entries] == [good]
    assert len(slept) == 1


def test_an_html_error_page_fails_in_one_line(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    fake_stripe.garble_next("html", count=100, status=502)
    with pytest.raises(StripeUnavailable) as caught:
        _read(client)
    assert "HTTP 502" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_is_json_object() -> None:
    assert is_json_object(b'{"a": 1}')
    assert not is_json_object(b"[1]")
    assert not is_json_object(b"<html></html>")
    assert not is_json_object(b'{"a": ')
    assert not is_json_object(b"\xff\xfe{}")


def test_pages_that_never_advance_end_the_listing(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    customer = _customer(fake_stripe)
    for minute in range(3):
        fake_stripe.add_payment_intent(customer, 700, created=T0 + timedelta(minutes=minute))
    fake_stripe.repeat_pages = True
    with pytest.raises(StripeUnavailable, match="do not advance"):
        list(extract(client, SINCE, UNTIL, slice_length=timedelta(days=2)))
    assert len(fake_stripe.requests) < 10


def test_an_empty_page_that_says_has_more_ends_the_listing(
    fake_stripe: FakeStripe, client: stripe.StripeClient
) -> None:
    fake_stripe.repeat_pages = True
    with pytest.raises(StripeUnavailable, match="empty page") as caught:
        list(extract(client, SINCE, UNTIL, slice_length=timedelta(days=2)))
    assert "\n" not in str(caught.value)
    assert len(fake_stripe.requests) < 10


class _Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_run_deadline_bounds_stripe_retries(fake_stripe: FakeStripe) -> None:
    clock = _Clock()
    settings = Settings(
        stripe_api_key=Secret(API_KEY),
        moesif_token=Secret("moesif-test-token"),
        stripe_api_base=fake_stripe.base_url,
        stripe_max_requests_per_second=1000.0,
    )
    client = build_stripe_client(settings, sleep=clock.sleep, deadline=Deadline.after(1.0, clock))
    fake_stripe.fail_next(503, count=5)
    with pytest.raises(DeadlineExceeded, match="deadline") as caught:
        _read(client)
    assert isinstance(caught.value, RunFailed)
    assert len(fake_stripe.requests) < 5
    assert clock.now < 51.0
