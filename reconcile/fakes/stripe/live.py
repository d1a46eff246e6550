"""The fake Stripe's live payments: PaymentIntents for ``/top-up``, events and their webhooks.

PaymentIntents are created and confirmed with Stripe's test cards, a repeated
``Idempotency-Key`` replays its first answer, and every change is an event the fake delivers,
signed, to one webhook endpoint.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from reconcile.fakes.stripe.errors import StripeApiError
from reconcile.fakes.stripe.seeding import charge
from reconcile.fakes.stripe.store import Obj, Query, Store

TEST_CARDS: dict[str, tuple[str, str, str] | str | None] = {
    "pm_card_visa": None,
    "pm_card_chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "pm_card_authenticationRequired": "requires_action",
}
"""Stripe's test payment methods the fake knows: success, declines, authentication needed."""


@dataclass
class WebhookEndpoint:
    """Where and how the fake delivers events."""

    url: str
    secret: str
    sleep: Callable[[float], None]
    attempts: int
    duplicates: bool


def sign(payload: str, secret: str, timestamp: int) -> str:
    """Return a ``Stripe-Signature`` header as Stripe computes it (the fake plays Stripe)."""
    digest = hmac.new(
        secret.encode("utf-8"), f"{timestamp}.{payload}".encode(), hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={digest}"


IDEMPOTENCY_KEY_LIFETIME = 24 * 60 * 60
"""Seconds Stripe keeps an idempotency key's answer (it may prune keys at least 24 hours old)."""


class LivePayments:
    """The fake's write side: PaymentIntents with test cards, idempotency keys, events."""

    def __init__(self, state: Store, api_version: str) -> None:
        """Write into ``state``; events name ``api_version`` as the account's."""
        self._state = state
        self._api_version = api_version
        self.account: str | None = None
        """The connected account whose events these are (Connect events name it); None: none."""
        self._replies: dict[str, tuple[str, int, Obj, int]] = {}
        self._events: list[Obj] = []
        self._delivered = 0
        self.endpoint: WebhookEndpoint | None = None

    def post(self, path: str, form: Query, key: str | None) -> Obj:
        """Answer a POST, replaying the first answer of a repeated ``Idempotency-Key``.

        As Stripe, the fake forgets a key :data:`IDEMPOTENCY_KEY_LIFETIME` after its first use
        (by the fake's clock): the same key later is a new request.
        """
        fingerprint = json.dumps([path, sorted(form.items())])
        with self._state.lock:
            now = self._state.now()
            if key is not None and key in self._replies:
                if now - self._replies[key][3] >= IDEMPOTENCY_KEY_LIFETIME:
                    del self._replies[key]
            if key is not None and key in self._replies:
                first, status, body, _used = self._replies[key]
                if first != fingerprint:
                    raise StripeApiError(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters "
                        "they were first used with.",
                        "idempotency_error",
                    )
                if status != 200:
                    error = StripeApiError(status, "")
                    error.body = copy.deepcopy(body)
                    raise error
                return copy.deepcopy(body)
            try:
                answer = self._answer(path, form)
            except StripeApiError as error:
                if key is not None:
                    self._replies[key] = (fingerprint, error.status, copy.deepcopy(error.body), now)
                raise
            if key is not None:
                self._replies[key] = (fingerprint, 200, copy.deepcopy(answer), now)
            return answer

    def _answer(self, path: str, form: Query) -> Obj:
        segments = [part for part in path.split("/") if part]
        if segments[:2] != ["v1", "payment_intents"] or len(segments) not in (2, 4):
            raise StripeApiError(404, f"Unrecognized request URL (POST: {path}).")
        if len(segments) == 2:
            intent = self._create(form)
        else:
            if segments[3] != "confirm":
                raise StripeApiError(404, f"Unrecognized request URL (POST: {path}).")
            intent = self._state.get("payment_intent", segments[2])
            intent["payment_method"] = form.get("payment_method") or intent["payment_method"]
        if form.get("confirm") == "true" or len(segments) == 4:
            self._confirm(intent)
        return copy.deepcopy(intent)

    def _create(self, form: Query) -> Obj:
        try:
            amount = int(form["amount"])
        except (KeyError, ValueError):
            raise StripeApiError(400, "Missing required param: amount.", param="amount") from None
        customer = form.get("customer")
        if customer is not None and customer not in self._state.objects["customer"]:
            raise StripeApiError(404, f"No such customer: '{customer}'", code="resource_missing")
        metadata = {
            name[len("metadata[") : -1]: value
            for name, value in form.items()
            if name.startswith("metadata[") and name.endswith("]")
        }
        intent_id = self._state.put(
            "payment_intent",
            {
                "amount": amount,
                "amount_received": 0,
                "currency": form.get("currency", "usd").lower(),
                "customer": customer,
                "metadata": metadata,
                "payment_method": form.get("payment_method"),
                "status": "requires_confirmation",
                "created": self._state.now(),
                "invoice": None,
                "latest_charge": None,
                "canceled_at": None,
                "last_payment_error": None,
            },
        )
        intent = self._state.get("payment_intent", intent_id)
        self._event("payment_intent.created", intent)
        return intent

    def _confirm(self, intent: Obj) -> None:
        card = intent.get("payment_method")
        if card not in TEST_CARDS:
            raise StripeApiError(
                400,
                f"No such PaymentMethod: '{card}'",
                code="resource_missing",
                param="payment_method",
            )
        outcome = TEST_CARDS[card]
        if outcome is None:
            intent["status"] = "succeeded"
            intent["amount_received"] = intent["amount"]
            charge(self._state, intent["id"], intent["created"])
            self._event("payment_intent.succeeded", intent)
        elif outcome == "requires_action":
            intent["status"] = "requires_action"
            intent["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {}}
            self._event("payment_intent.requires_action", intent)
        elif isinstance(outcome, tuple):
            code, decline_code, message = outcome
            intent["status"] = "requires_payment_method"
            error = {
                "type": "card_error",
                "code": code,
                "decline_code": decline_code,
                "message": message,
            }
            intent["last_payment_error"] = dict(error)
            self._event("payment_intent.payment_failed", intent)
            raised = StripeApiError(
                402, message, "card_error", code=code, decline_code=decline_code
            )
            shown: Obj = raised.body["error"]
            shown["payment_intent"] = copy.deepcopy(intent)
            raise raised

    def emit(self, event_type: str, kind: str, object_id: str) -> str:
        """Create an event about a stored object as it is now; return the event id."""
        with self._state.lock:
            return self._event(event_type, self._state.get(kind, object_id))

    def _event(self, event_type: str, obj: Obj) -> str:
        rendered = copy.deepcopy(obj)
        if rendered.get("object") == "dispute":
            rendered["balance_transactions"] = [
                copy.deepcopy(self._state.get("balance_transaction", txn))
                for txn in obj.get("balance_transactions", [])
            ]
        event_id = f"evt_fake{self._state.number():012d}"
        self._events.append(
            {
                "id": event_id,
                "object": "event",
                "api_version": self._api_version,
                "created": self._state.now(),
                "data": {"object": rendered},
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "type": event_type,
                **({"account": self.account} if self.account else {}),
            }
        )
        return event_id

    def events(self) -> list[Obj]:
        """Return every event created so far, oldest first."""
        with self._state.lock:
            return copy.deepcopy(self._events)

    def deliver(self) -> list[int]:
        """POST each event not delivered yet to the endpoint, signed; retry non-2xx answers."""
        endpoint = self.endpoint
        if endpoint is None:
            raise RuntimeError("no webhook endpoint configured")
        with self._state.lock:
            pending = copy.deepcopy(self._events[self._delivered :])
            self._delivered = len(self._events)
        statuses = []
        for event in pending:
            for _copy in range(2 if endpoint.duplicates else 1):
                statuses.append(self._deliver_one(endpoint, event))
        return statuses

    def _deliver_one(self, endpoint: WebhookEndpoint, event: Obj) -> int:
        payload = json.dumps(event, indent=2)
        status = 0
        for attempt in range(endpoint.attempts):
            if attempt:
                endpoint.sleep(2.0**attempt)
            header = sign(payload, endpoint.secret, self._state.now())
            try:
                status = httpx.post(
                    endpoint.url,
                    content=payload.encode("utf-8"),
                    headers={"Content-Type": "application/json", "Stripe-Signature": header},
                    timeout=30,
                ).status_code
            except httpx.HTTPError:
                status = 0
            if 200 <= status < 300:
                break
        return status
