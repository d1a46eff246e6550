"""Seeding the fake Stripe: customers, subscriptions, PaymentIntents and what follows from them.

A succeeded PaymentIntent gets its charge and balance transaction, a refund or a dispute its
balance transactions, as Stripe makes them; tests and the demo write a history this way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from reconcile.fakes.stripe.store import Store


class Seeding:
    """The ``add_*`` side of the fake: objects as if Stripe had them already."""

    def __init__(self, state: Store) -> None:
        """Seed into ``state``."""
        self._state = state

    def add_customer(self, id: str | None = None, metadata: Mapping[str, str] | None = None) -> str:  # noqa: A002
        """Create a customer; return its id."""
        return self._state.put(
            "customer", {"id": id, "metadata": dict(metadata or {}), "created": self._state.now()}
        )

    def add_subscription(
        self, customer: str, status: str = "active", *, created: datetime | None = None
    ) -> str:
        """Create a subscription of ``customer`` in ``status``; return its id."""
        moment = self._state.unix(created)
        return self._state.put(
            "subscription",
            {
                "customer": customer,
                "status": status,
                "created": moment,
                "start_date": moment,
                "cancel_at_period_end": False,
                "canceled_at": moment if status == "canceled" else None,
                "ended_at": moment if status == "canceled" else None,
            },
        )

    def add_payment_intent(
        self,
        customer: str | None,
        amount: int,
        currency: str = "usd",
        status: str = "succeeded",
        metadata: Mapping[str, str] | None = None,
        invoice: str | None = None,
        created: datetime | None = None,
    ) -> str:
        """Create a PaymentIntent; a succeeded one gets its charge and balance transaction.

        ``invoice`` links it to an invoice: the PaymentIntent's ``invoice`` field (before basil)
        and an InvoicePayment (basil and later).
        """
        state = self._state
        moment = state.unix(created)
        with state.lock:
            payment_intent_id = state.put(
                "payment_intent",
                {
                    "amount": amount,
                    "amount_received": amount if status == "succeeded" else 0,
                    "currency": currency.lower(),
                    "customer": customer,
                    "metadata": dict(metadata or {}),
                    "status": status,
                    "created": moment,
                    "invoice": invoice,
                    "canceled_at": None,
                    "last_payment_error": None,
                },
            )
            if status == "succeeded":
                charge(state, payment_intent_id, moment)
            if invoice is not None:
                invoice_payment(state, payment_intent_id, invoice, moment)
        return payment_intent_id

    def add_refund(
        self,
        payment_intent: str,
        amount: int | None = None,
        status: str = "succeeded",
        created: datetime | None = None,
        *,
        name_payment_intent: bool = True,
    ) -> str:
        """Refund ``amount`` (default: what is left) of a succeeded PaymentIntent.

        A succeeded or pending refund debits the balance (a ``refund`` balance transaction).
        With ``name_payment_intent=False`` the refund names only its charge.
        """
        state = self._state
        moment = state.unix(created)
        with state.lock:
            intent = state.get("payment_intent", payment_intent)
            paid = state.get("charge", intent["latest_charge"])
            amount = paid["amount"] - paid["amount_refunded"] if amount is None else amount
            refund_id = state.put(
                "refund",
                {
                    "amount": amount,
                    "charge": paid["id"],
                    "payment_intent": payment_intent if name_payment_intent else None,
                    "currency": intent["currency"],
                    "status": status,
                    "created": moment,
                },
            )
            if status in ("succeeded", "pending"):
                paid["amount_refunded"] += amount
                paid["refunded"] = paid["amount_refunded"] >= paid["amount"]
                debit = transaction(
                    state, refund_id, -amount, intent["currency"], "refund", "refund", moment
                )
                state.get("refund", refund_id)["balance_transaction"] = debit
        return refund_id

    def fail_refund(self, refund_id: str, created: datetime | None = None) -> str:
        """Fail a refund, returning its money (a ``refund_failure`` credit); return that id."""
        state = self._state
        with state.lock:
            refund = state.get("refund", refund_id)
            refund["status"] = "failed"
            return transaction(
                state,
                refund_id,
                refund["amount"],
                refund["currency"],
                "refund_failure",
                "refund_failure",
                state.unix(created),
            )

    def add_dispute(
        self,
        payment_intent: str,
        amount: int | None = None,
        created: datetime | None = None,
        *,
        settled: tuple[int, str] | None = None,
    ) -> str:
        """Dispute a succeeded PaymentIntent: funds withdrawn (a negative ``dispute`` movement).

        ``settled`` gives the balance transaction another amount and currency (minor units,
        code) than the dispute's, as when the account settles in another currency.
        """
        state = self._state
        moment = state.unix(created)
        with state.lock:
            intent = state.get("payment_intent", payment_intent)
            paid = state.get("charge", intent["latest_charge"])
            amount = paid["amount"] if amount is None else amount
            dispute_id = state.put(
                "dispute",
                {
                    "amount": amount,
                    "charge": paid["id"],
                    "payment_intent": payment_intent,
                    "currency": intent["currency"],
                    "status": "needs_response",
                    "created": moment,
                    "balance_transactions": [],
                },
            )
            paid["disputed"] = True
            bt_amount, bt_currency = settled or (amount, intent["currency"])
            withdrawal = transaction(
                state, dispute_id, -abs(bt_amount), bt_currency, "adjustment", "dispute", moment
            )
            state.get("dispute", dispute_id)["balance_transactions"].append(withdrawal)
        return dispute_id

    def reinstate_dispute(
        self,
        dispute_id: str,
        created: datetime | None = None,
        *,
        settled: tuple[int, str] | None = None,
    ) -> str:
        """Win a dispute: funds reinstated (a ``dispute_reversal`` credit); return that id."""
        state = self._state
        with state.lock:
            dispute = state.get("dispute", dispute_id)
            dispute["status"] = "won"
            bt_amount, bt_currency = settled or (dispute["amount"], dispute["currency"])
            reinstated = transaction(
                state,
                dispute_id,
                abs(bt_amount),
                bt_currency,
                "adjustment",
                "dispute_reversal",
                state.unix(created),
            )
            dispute["balance_transactions"].append(reinstated)
            return reinstated

    def set_status(self, payment_intent: str, status: str) -> None:
        """Move a PaymentIntent to ``status`` (a processing one that succeeds gets its charge)."""
        state = self._state
        with state.lock:
            intent = state.get("payment_intent", payment_intent)
            intent["status"] = status
            if status == "succeeded" and not intent["latest_charge"]:
                intent["amount_received"] = intent["amount"]
                charge(state, payment_intent, intent["created"])

    def set_default_payment_method(self, customer: str, payment_method: str) -> None:
        """Save ``payment_method`` (a test card such as ``pm_card_visa``) as the default."""
        with self._state.lock:
            self._state.get("customer", customer)["invoice_settings"] = {
                "custom_fields": None,
                "default_payment_method": payment_method,
                "footer": None,
                "rendering_options": None,
            }


def charge(state: Store, payment_intent_id: str, moment: int) -> None:
    """Give a succeeded PaymentIntent its charge and the charge's balance transaction."""
    intent = state.get("payment_intent", payment_intent_id)
    charge_id = state.put(
        "charge",
        {
            "amount": intent["amount"],
            "amount_captured": intent["amount"],
            "amount_refunded": 0,
            "captured": True,
            "paid": True,
            "refunded": False,
            "disputed": False,
            "status": "succeeded",
            "currency": intent["currency"],
            "customer": intent["customer"],
            "payment_intent": payment_intent_id,
            "created": moment,
            "description": None,
        },
    )
    intent["latest_charge"] = charge_id
    state.get("charge", charge_id)["balance_transaction"] = transaction(
        state, charge_id, intent["amount"], intent["currency"], "charge", "charge", moment
    )


def invoice_payment(state: Store, payment_intent_id: str, invoice: str, moment: int) -> None:
    """Link a PaymentIntent to ``invoice`` with an InvoicePayment, as basil and later do."""
    intent = state.get("payment_intent", payment_intent_id)
    state.put(
        "invoice_payment",
        {
            "invoice": invoice,
            "amount_paid": intent["amount_received"] or None,
            "amount_requested": intent["amount"],
            "currency": intent["currency"],
            "created": moment,
            "is_default": True,
            "payment": {"type": "payment_intent", "payment_intent": payment_intent_id},
            "status": "paid" if intent["status"] == "succeeded" else "open",
            "status_transitions": {"canceled_at": None, "paid_at": moment},
        },
    )


def transaction(
    state: Store, source: str, amount: int, currency: str, kind: str, category: str, moment: int
) -> str:
    """Store a balance transaction of ``source`` (type ``kind``, ``category``); return its id."""
    return state.put(
        "balance_transaction",
        {
            "amount": amount,
            "currency": currency.lower(),
            "net": amount,
            "fee": 0,
            "fee_details": [],
            "exchange_rate": None,
            "type": kind,
            "reporting_category": category,
            "source": source,
            "status": "available",
            "created": moment,
            "available_on": moment,
            "description": None,
        },
    )
