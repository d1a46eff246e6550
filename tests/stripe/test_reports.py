"""Stripe's balance summary through the real SDK against the fake's Reporting API, and the
counterparts of what a read paged."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import stripe

from reconcile.domain.times import Window
from reconcile.fakes.stripe import FakeStripe
from reconcile.rules.control_totals import (
    PagedTransaction,
    missing_counterparts,
    total_mismatches,
)
from reconcile.stripe import reports
from reconcile.stripe.counterparts import Paged, PagedMovement, counterparts
from reconcile.stripe.extract import extract
from reconcile.stripe.reports import NoSummary, Summary, balance_summary
from tests.stripe.conftest import API_KEY, T0

WINDOW = Window(T0 - timedelta(days=3), T0)


def _history(fake: FakeStripe) -> str:
    customer = fake.add_customer(
        metadata={"moesif_company_id": "acme", "moesif_subscription_id": "sub_acme"}
    )
    paid = fake.add_payment_intent(customer, 5000, created=T0 - timedelta(days=2))
    fake.add_payment_intent(customer, 2000, currency="eur", created=T0 - timedelta(days=2))
    fake.add_refund(paid, 1000, created=T0 - timedelta(days=1))
    fake.add_dispute(paid, 500, created=T0 - timedelta(hours=10))
    return paid


def _summary(client: stripe.StripeClient, fake: FakeStripe, slept: list[float]) -> Summary:
    found = balance_summary(
        client, API_KEY, WINDOW, api_base=fake.base_url, sleep=slept.append, poll_seconds=2.5
    )
    assert isinstance(found, Summary), found
    return found


def _read(client: stripe.StripeClient, window: Window = WINDOW) -> list[Paged]:
    paged: list[Paged] = []
    list(extract(client, window.since, window.until, on_paged=paged.append))
    return paged


def _transactions(paged: list[Paged]) -> list[PagedTransaction]:
    return [item.transaction for item in paged if isinstance(item, PagedMovement)]


def test_the_summary_is_pending_then_sums_the_fakes_balance_transactions(
    client: stripe.StripeClient, fake_stripe: FakeStripe, slept: list[float]
) -> None:
    _history(fake_stripe)

    summary = _summary(client, fake_stripe, slept)

    assert slept == [2.5, 2.5]  # pending when created and at the first look, then succeeded
    rows = {(row["reporting_category"], row["currency"]): row for row in summary.rows}
    assert rows["charge", "usd"] | {} == {
        "reporting_category": "charge",
        "currency": "usd",
        "count": "1",
        "gross": "50.00",
        "fee": "0.00",
        "net": "50.00",
    }
    assert rows["refund", "usd"]["gross"] == "-10.00"
    assert rows["dispute", "usd"]["gross"] == "-5.00"
    assert rows["charge", "eur"]["gross"] == "20.00"
    assert total_mismatches(_transactions(_read(client)), summary.rows) == []


def test_a_summary_short_of_one_movement_differs_in_that_category_only(
    client: stripe.StripeClient, fake_stripe: FakeStripe, slept: list[float]
) -> None:
    _history(fake_stripe)
    fake_stripe.reports.short_category = "dispute"

    summary = _summary(client, fake_stripe, slept)
    found = total_mismatches(_transactions(_read(client)), summary.rows)

    assert [(one.reporting_category, one.currency) for one in found] == [("dispute", "usd")]
    assert (found[0].paged.gross, found[0].reported.gross) == (-500, 0)


def test_a_refusal_and_a_failure_are_reasons_not_errors(
    client: stripe.StripeClient, fake_stripe: FakeStripe, slept: list[float]
) -> None:
    fake_stripe.reports.refuse = True
    refused = balance_summary(
        client, API_KEY, WINDOW, api_base=fake_stripe.base_url, sleep=slept.append
    )
    assert isinstance(refused, NoSummary)
    assert "HTTP 403" in refused.reason

    fake_stripe.reports.refuse, fake_stripe.reports.fail = False, True
    failed = balance_summary(
        client, API_KEY, WINDOW, api_base=fake_stripe.base_url, sleep=slept.append
    )
    assert isinstance(failed, NoSummary)
    assert "failed" in failed.reason


def test_a_run_still_pending_after_its_polls_gives_up(
    client: stripe.StripeClient, fake_stripe: FakeStripe, slept: list[float]
) -> None:
    fake_stripe.reports.pending_polls = 10

    found = balance_summary(
        client, API_KEY, WINDOW, api_base=fake_stripe.base_url, sleep=slept.append, polls=3
    )

    assert isinstance(found, NoSummary)
    assert "not ready after 3 polls" in found.reason
    assert len(slept) == 3


def test_a_window_past_stripes_data_is_cut_to_its_end(
    client: stripe.StripeClient, fake_stripe: FakeStripe, slept: list[float]
) -> None:
    end = T0 - timedelta(days=1)
    fake_stripe.reports.data_available_end = int(end.timestamp())

    summary = _summary(client, fake_stripe, slept)

    assert summary.cut
    assert summary.window == Window(WINDOW.since, end)


def test_the_key_goes_to_no_other_host(fake_stripe: FakeStripe) -> None:
    asked: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, text="")

    http = httpx.Client(transport=httpx.MockTransport(answer))
    with pytest.raises(ValueError, match="evil.example"):
        reports._download(
            "https://evil.example/v1/files/f/contents", API_KEY, fake_stripe.base_url, http
        )
    assert asked == []


def test_every_object_finds_its_balance_transaction(
    client: stripe.StripeClient, fake_stripe: FakeStripe
) -> None:
    paid = _history(fake_stripe)
    dispute = fake_stripe.objects("dispute")[0]["id"]
    fake_stripe.reinstate_dispute(dispute, created=T0 + timedelta(days=1))  # after the window

    moved, refs = counterparts(client, _read(client), WINDOW)

    assert missing_counterparts(moved, refs) == []
    assert {one.kind for one in moved} == {"top-up", "refund", "dispute"}
    assert paid in {one.id for one in moved}


def test_a_balance_transaction_without_its_object_is_caught(
    client: stripe.StripeClient, fake_stripe: FakeStripe
) -> None:
    _history(fake_stripe)
    refund = fake_stripe.objects("refund")[0]
    with fake_stripe._state.lock:
        fake_stripe._state.get("refund", refund["id"])["balance_transaction"] = None

    moved, refs = counterparts(client, _read(client), WINDOW)
    gaps = missing_counterparts(moved, refs)

    assert [(gap.object_id, gap.balance_transaction_id) for gap in gaps] == [
        (refund["id"], None),
        (None, refund["balance_transaction"]),
    ]
