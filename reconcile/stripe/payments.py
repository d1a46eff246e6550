"""Charging a customer's saved card for a top-up, and finding a charge made under a key.

The SDK's errors pass through: the caller answers a declined card, a key reused with other
parameters and an unreachable Stripe each in its own way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe

TOPUP_KEY_METADATA = "reconcile_topup_key"
"""PaymentIntent metadata naming the Stripe idempotency key it was made under."""


@dataclass(frozen=True)
class Charge:
    """One off-session charge of a customer's saved card, credited to a Moesif subscription."""

    customer_id: str
    amount_minor: int
    currency: str
    payment_method: str
    company_id: str
    subscription_id: str


def customer(client: stripe.StripeClient, customer_id: str) -> dict[str, Any]:
    """Return the Stripe customer ``customer_id`` (a deleted one says ``deleted``)."""
    return client.v1.customers.retrieve(customer_id).to_dict()


def charge(client: stripe.StripeClient, wanted: Charge, key: str) -> dict[str, Any]:
    """Create and confirm the PaymentIntent of ``wanted`` under the idempotency ``key``."""
    return client.v1.payment_intents.create(
        params={
            "amount": wanted.amount_minor,
            "currency": wanted.currency,
            "customer": wanted.customer_id,
            "payment_method": wanted.payment_method,
            "off_session": True,
            "confirm": True,
            "metadata": {
                "moesif_company_id": wanted.company_id,
                "moesif_subscription_id": wanted.subscription_id,
                TOPUP_KEY_METADATA: key,
            },
        },
        options={"idempotency_key": key},
    ).to_dict()


def charged_under(
    client: stripe.StripeClient, customer_id: str, key: str, since: datetime
) -> dict[str, Any] | None:
    """Return the customer's PaymentIntent made under ``key`` since ``since``, if any."""
    found = client.v1.payment_intents.list(
        params={"customer": customer_id, "created": {"gte": int(since.timestamp())}, "limit": 100}
    )
    for intent in found.auto_paging_iter():
        seen: dict[str, Any] = intent.to_dict()
        metadata = seen.get("metadata")
        if isinstance(metadata, Mapping) and metadata.get(TOPUP_KEY_METADATA) == key:
            return seen
    return None
