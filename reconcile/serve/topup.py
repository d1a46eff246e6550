"""``/top-up``: decide where the credit goes, then charge the saved card once, then queue it.

The order is what keeps money safe: the posting rule the nightly run and the webhook ask decides
before any charge (one Moesif subscription, that Moesif has, of the customer's company, in the
request's currency), so a top-up it refuses is never charged; and a charge is keyed so that a
client's retry never charges twice.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import stripe
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from reconcile.domain.vocab import Source
from reconcile.errors import ReconcileError
from reconcile.rules.destination import Movement
from reconcile.safe_text import excerpt
from reconcile.serve import inbox
from reconcile.serve.destinations import Destinations
from reconcile.serve.topup_request import TopUpRequest, stripe_idempotency_key
from reconcile.stripe import payments
from reconcile.stripe.mapping import (
    StripeLookup,
    company_of,
    id_of,
    needs_subscription_list,
    resolve_subscription,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status and JSON body."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)


def error(status: int, message: str, **extra: Any) -> Answer:  # noqa: ANN401 - JSON values
    """Return an error answer ``{"error": message, ...}``."""
    return Answer(status, {"error": message, **extra})


@dataclass(frozen=True)
class Destination:
    """Where a customer's credit goes in Moesif, and the card it is charged on."""

    company_id: str
    subscription_id: str
    payment_method: str


class TopUps:
    """Charges customers' saved cards and queues their credit for the event worker."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        stripe_client: stripe.StripeClient,
        *,
        destinations: Destinations,
        clock: Callable[[], datetime],
        queued: Callable[[], None],
    ) -> None:
        """Record in ``sessions``, charge with ``stripe_client``; call ``queued`` after queueing.

        ``destinations`` answers the posting rule before any charge.
        """
        self._sessions = sessions
        self._stripe = stripe_client
        self._destinations = destinations
        self._clock = clock
        self._queued = queued

    def top_up(
        self,
        request: TopUpRequest,
        client_key: str | None,
        *,
        charged_since: datetime | None = None,
    ) -> Answer:
        """Resolve, charge and queue one top-up; return the answer for the client.

        ``charged_since`` resumes a request under ``client_key`` that stopped unanswered: a
        PaymentIntent made under the key since then is taken instead of charging again (Stripe
        forgets idempotency keys after 24 hours).
        """
        try:
            found = self._destination(request)
        except stripe.StripeError as failure:
            return _lookup_failed(failure, request.customer_id)
        except ReconcileError:
            log.warning("Moesif could not be read to place a top-up of %s", request.customer_id)
            return error(502, "Moesif could not be read; nothing was charged")
        except SQLAlchemyError:
            log.warning("the database failed placing a top-up of %s", request.customer_id)
            return error(503, "the top-up could not be placed; nothing was charged")
        if isinstance(found, Answer):
            return found
        key = stripe_idempotency_key(request, client_key or uuid.uuid4().hex)
        try:
            earlier = (
                payments.charged_under(self._stripe, request.customer_id, key, charged_since)
                if charged_since
                else None
            )
            intent = earlier or self._charge(request, found, key)
        except stripe.CardError as declined:
            return _declined(declined)
        except stripe.IdempotencyError:
            return error(409, "this Idempotency-Key was used with other parameters")
        except stripe.StripeError:
            log.warning("Stripe did not confirm a top-up of %s", excerpt(request.customer_id))
            return error(502, "Stripe did not answer; retry with the same Idempotency-Key")
        return self._settled(intent)

    def _destination(self, request: TopUpRequest) -> Destination | Answer:
        """Return where the credit goes, or the answer refusing it before any charge."""
        customer_id = request.customer_id
        customer = payments.customer(self._stripe, customer_id)
        if customer.get("deleted"):
            return error(400, f"unknown customer {customer_id}")
        live = (
            StripeLookup(self._stripe).live_subscriptions(customer_id)
            if needs_subscription_list({}, customer)
            else None
        )
        subscription, reason = resolve_subscription({}, customer, live)
        company = company_of(customer)
        verdict = self._destinations.verdict(
            Movement(
                currency=request.currency,
                company_id=company if subscription else None,
                subscription_id=subscription,
                unmapped_reason=reason,
                source=Source.TOPUP,
            )
        )
        if not verdict.posts:
            return error(
                409, f"{verdict.reason}; nothing was charged", reason=str(verdict.category)
            )
        settings = customer.get("invoice_settings") or {}
        method = (
            id_of(settings.get("default_payment_method")) if isinstance(settings, Mapping) else None
        )
        if method is None:
            return error(409, f"customer {customer_id} has no default payment method")
        return Destination(company, str(subscription), method)

    def _charge(self, request: TopUpRequest, to: Destination, key: str) -> dict[str, Any]:
        wanted = payments.Charge(
            customer_id=request.customer_id,
            amount_minor=request.amount_minor,
            currency=request.currency,
            payment_method=to.payment_method,
            company_id=to.company_id,
            subscription_id=to.subscription_id,
        )
        return payments.charge(self._stripe, wanted, key)

    def _settled(self, intent: Mapping[str, Any]) -> Answer:
        payment_intent_id = str(intent["id"])
        status = str(intent.get("status"))
        if status in ("requires_action", "processing"):
            return Answer(202, {"payment_intent_id": payment_intent_id, "status": status})
        if status != "succeeded":
            return error(402, f"the payment is {status}", decline_code=None)
        event = {
            "id": f"{inbox.TOPUP_PREFIX}{payment_intent_id}",
            "object": "event",
            "type": "payment_intent.succeeded",
            "created": int(intent.get("created") or self._clock().timestamp()),
            "data": {"object": dict(intent)},
        }
        try:
            inbox.record(self._sessions, event, json.dumps(event), self._clock())
        except SQLAlchemyError:
            log.warning("could not queue the credit of %s", payment_intent_id)
            return error(
                503,
                "charged, but the credit could not be queued here; Stripe's webhook and the "
                "nightly run credit it, and a retry with the same Idempotency-Key charges nothing",
                payment_intent_id=payment_intent_id,
            )
        self._queued()
        return Answer(
            200,
            {
                "payment_intent_id": payment_intent_id,
                "status": "succeeded",
                "transaction_id": payment_intent_id,
            },
        )


def _declined(declined: stripe.CardError) -> Answer:
    body = (
        (declined.json_body or {}).get("error", {}) if isinstance(declined.json_body, dict) else {}
    )
    intent = body.get("payment_intent") if isinstance(body, dict) else None
    if declined.code == "authentication_required" and isinstance(intent, dict):
        return Answer(202, {"payment_intent_id": str(intent["id"]), "status": "requires_action"})
    return error(
        402,
        str(body.get("message") or "the card was declined"),
        decline_code=body.get("decline_code") or declined.code,
    )


def _lookup_failed(failure: stripe.StripeError, customer_id: str) -> Answer:
    if failure.http_status == 404:
        return error(400, f"unknown customer {customer_id}")
    log.warning(
        "Stripe could not be read for %s (HTTP %s)", excerpt(customer_id), failure.http_status
    )
    return error(502, "Stripe could not be reached; nothing was charged")
