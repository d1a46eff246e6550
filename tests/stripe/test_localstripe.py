"""A second opinion: the extractor against localstripe, an independent fake Stripe, in-process.

localstripe (aiohttp) runs on 127.0.0.1 in a background thread, not through its CLI (which binds
every interface and pickles its store to /tmp). Everything is created through the real SDK.

localstripe lacks two things the extractor relies on, which a thin test-side aiohttp middleware
provides: ``created[gte|gt|lte|lt]`` filters on list endpoints (it answers 400/500 to them), so
the middleware strips them and filters the answer; and ``amount_received`` on PaymentIntents
(Stripe always sends it), which the middleware adds as Stripe defines it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe

from reconcile.config import Secret, Settings
from reconcile.domain.vocab import EntryType, Source
from reconcile.stripe.client import build_stripe_client
from reconcile.stripe.extract import extract

localstripe_resources = pytest.importorskip("localstripe.resources")
localstripe_server = pytest.importorskip("localstripe.server")
web = pytest.importorskip("aiohttp.web")

API_KEY = "sk_test_localstripe123"
Handler = Callable[[Any], Awaitable[Any]]
_CHECKS: dict[str, Callable[[int, int], bool]] = {
    "gte": lambda a, b: a >= b,
    "gt": lambda a, b: a > b,
    "lte": lambda a, b: a <= b,
    "lt": lambda a, b: a < b,
}


def _with_amount_received(item: dict[str, Any]) -> dict[str, Any]:
    if item.get("object") == "payment_intent" and "amount_received" not in item:
        item["amount_received"] = item["amount"] if item.get("status") == "succeeded" else 0
    return item


@web.middleware
async def stripe_adapter(request: Any, handler: Handler) -> Any:
    """Provide the ``created`` list filters and ``amount_received`` localstripe lacks."""
    created = {
        name[len("created[") : -1]: int(value)
        for name, value in request.query.items()
        if name.startswith("created[")
    }
    if created:
        kept = [(k, v) for k, v in request.query.items() if not k.startswith("created[")]
        request = request.clone(rel_url=request.rel_url.with_query(kept))
    response = await handler(request)
    if request.method != "GET" or response.status != 200 or "json" not in response.content_type:
        return response
    body = json.loads(response.body)
    if body.get("object") == "list":
        body["data"] = [
            _with_amount_received(item)
            for item in body["data"]
            if all(_CHECKS[op](item["created"], bound) for op, bound in created.items())
        ]
    else:
        body = _with_amount_received(body)
    return web.json_response(body, status=response.status)


@pytest.fixture(scope="module")
def localstripe_url() -> Iterator[str]:
    store = localstripe_resources.Store
    original_dump = store.dump_to_disk
    store.dump_to_disk = lambda self: None  # keep the store in memory, not in /tmp
    localstripe_resources.store.clear()
    app = localstripe_server.app
    app.middlewares.append(stripe_adapter)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    host, port = runner.addresses[0][:2]
    thread = threading.Thread(target=loop.run_forever, name="localstripe", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        webhooks = asyncio.all_tasks(loop)  # localstripe's webhook sends, no webhook registered
        for task in webhooks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*webhooks, return_exceptions=True))
        loop.run_until_complete(runner.cleanup())
        loop.close()
        localstripe_resources.store.clear()
        store.dump_to_disk = original_dump


def _card(client: stripe.StripeClient, number: str) -> str:
    method = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    return str(method.id)


def test_extractor_agrees_with_localstripe(localstripe_url: str) -> None:
    settings = Settings(
        stripe_api_key=Secret(API_KEY),
        moesif_token=Secret("unused"),
        stripe_api_base=localstripe_url,
        stripe_max_requests_per_second=1000.0,
    )
    client = build_stripe_client(settings, sleep=lambda _: None)
    started = datetime.fromtimestamp(int(time.time()), tz=UTC)
    customer = client.v1.customers.create(
        params={"metadata": {"moesif_company_id": "acme", "moesif_subscription_id": "sub_m"}}
    )
    paid = client.v1.payment_intents.create(
        params={
            "amount": 5000,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": _card(client, "4242424242424242"),
            "confirm": True,
        }
    )
    assert paid.status == "succeeded"
    refund = client.v1.refunds.create(params={"payment_intent": paid.id, "amount": 1200})
    unpaid = client.v1.payment_intents.create(
        params={
            "amount": 700,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": _card(client, "4000002500003155"),
            "confirm": True,
        }
    )
    assert unpaid.status == "requires_action"

    found = {
        entry.transaction_id: entry
        for entry in extract(
            client,
            started - timedelta(hours=1),
            started + timedelta(hours=1),
            slice_length=timedelta(hours=1),
        )
    }

    assert set(found) == {paid.id, refund.id}
    credit, debit = found[paid.id], found[refund.id]
    assert (credit.source, credit.entry_type, credit.amount_minor, credit.currency) == (
        Source.TOPUP,
        EntryType.CREDIT,
        5000,
        "usd",
    )
    assert (debit.source, debit.entry_type, debit.amount_minor, debit.topup_id) == (
        Source.REFUND,
        EntryType.DEBIT,
        1200,
        paid.id,
    )
    for entry in (credit, debit):
        assert (entry.company_id, entry.subscription_id, entry.stripe_customer_id) == (
            "acme",
            "sub_m",
            customer.id,
        )
        assert started - timedelta(seconds=5) <= entry.created_at <= started + timedelta(minutes=1)
