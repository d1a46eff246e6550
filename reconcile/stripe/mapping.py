"""Which Stripe payments are top-ups, and which Moesif company and subscription each one credits.

The decisions are pure functions of plain Stripe objects (dicts); :class:`StripeLookup` fetches
and caches the objects they need for one run.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import stripe

from reconcile.domain.money import is_iso_currency, minor_amount_problem
from reconcile.domain.times import from_unix
from reconcile.domain.values import Unreadable
from reconcile.domain.vocab import UnreadableSource
from reconcile.errors import StripeUnavailable
from reconcile.safe_text import excerpt, text_problem

logger = logging.getLogger(__name__)

StripeDict = Mapping[str, Any]
"""A Stripe object as plain data (``StripeObject.to_dict()``)."""

INVOICE_PAYMENT_PAGE = 10
"""Page size when asking ``/v1/invoice_payments`` which invoices a PaymentIntent paid."""

_NO_ENDPOINT_STATUSES = frozenset({404, 405, 501})
"""Answers of a Stripe-compatible server that does not serve an endpoint at all."""
_V = TypeVar("_V")


@dataclass(frozen=True)
class TopUp:
    """A payment that bought prepaid credit, and where in Moesif that credit belongs.

    ``company_id`` and ``subscription_id`` are ``None`` when the customer does not map to one
    Moesif subscription; ``unmapped_reason`` says why, and ``company_hint`` still names the
    company the payment most likely belongs to (for the ``--company`` filter).
    """

    payment_intent_id: str
    customer_id: str
    company_id: str | None
    subscription_id: str | None
    unmapped_reason: str | None
    company_hint: str


def is_topup(payment_intent: StripeDict, invoice_linked: bool) -> bool:
    """Return whether a PaymentIntent is a prepaid-credit top-up (contract section 4).

    A top-up succeeded, has a customer, is not linked to an invoice, and is not marked with
    metadata ``moesif_topup`` = ``false`` (any case).
    """
    if payment_intent.get("status") != "succeeded" or not id_of(payment_intent.get("customer")):
        return False
    flag = str((payment_intent.get("metadata") or {}).get("moesif_topup", "")).strip().lower()
    return flag != "false" and not invoice_linked


def company_of(customer: StripeDict) -> str:
    """Return the Moesif company of a customer: metadata ``moesif_company_id``, else its id."""
    company = str((customer.get("metadata") or {}).get("moesif_company_id") or "").strip()
    return company or str(customer["id"])


def live_subscription_ids(subscriptions: Iterable[StripeDict], customer_id: str) -> list[str]:
    """Return the ids of ``customer_id``'s subscriptions that are not canceled.

    Only ``canceled`` ends a subscription here (contract section 4); every other status,
    ``incomplete_expired`` included, counts. Subscriptions of other customers are dropped, so a
    server that ignores the ``customer`` filter does not lend one customer everyone's.
    """
    return [
        str(item["id"])
        for item in subscriptions
        if item.get("status") != "canceled" and id_of(item.get("customer")) == customer_id
    ]


def pays_payment_intent(invoice_payment: StripeDict, payment_intent_id: str) -> bool:
    """Return whether an InvoicePayment's ``payment`` is the PaymentIntent ``payment_intent_id``."""
    payment = invoice_payment.get("payment")
    if not isinstance(payment, Mapping):
        return False
    return id_of(payment.get("payment_intent")) == payment_intent_id


def resolve_subscription(
    payment_intent: StripeDict, customer: StripeDict, live_subscriptions: list[str] | None
) -> tuple[str | None, str | None]:
    """Return ``(subscription_id, unmapped_reason)`` for a top-up; exactly one is ``None``.

    PaymentIntent metadata ``moesif_subscription_id`` wins, then the customer's, then the
    customer's only non-canceled Stripe subscription. None or several is never guessed.

    Args:
        payment_intent: the top-up.
        customer: its customer.
        live_subscriptions: ids from :func:`live_subscription_ids`, or ``None`` when they are
            not needed because metadata already decides (callers fetch them lazily).
    """
    for source in (payment_intent, customer):
        named = str((source.get("metadata") or {}).get("moesif_subscription_id") or "").strip()
        if named:
            return named, None
    live = live_subscriptions or []
    if len(live) == 1:
        return live[0], None
    counted = (
        "no Stripe subscription that is not canceled"
        if not live
        else f"{len(live)} Stripe subscriptions that are not canceled"
    )
    return None, f"customer {customer['id']} has no Moesif subscription id and {counted}"


def needs_subscription_list(payment_intent: StripeDict, customer: StripeDict) -> bool:
    """Return whether metadata leaves the subscription open, so Stripe's list must decide."""
    return not any(
        str((source.get("metadata") or {}).get("moesif_subscription_id") or "").strip()
        for source in (payment_intent, customer)
    )


def map_topup(
    payment_intent: StripeDict, customer: StripeDict, live_subscriptions: list[str] | None
) -> TopUp:
    """Return the Moesif destination of a top-up (pure: the caller fetched the objects)."""
    subscription_id, reason = resolve_subscription(payment_intent, customer, live_subscriptions)
    company = company_of(customer)
    return TopUp(
        payment_intent_id=str(payment_intent["id"]),
        customer_id=str(customer["id"]),
        company_id=company if subscription_id else None,
        subscription_id=subscription_id,
        unmapped_reason=reason,
        company_hint=company,
    )


def paged(listed: stripe.ListObject[Any], what: str) -> Iterator[Any]:
    """Yield every item of a Stripe list across its pages, refusing pages that do not advance.

    A server answering ``has_more`` with the same page again (or any page that repeats an id
    already listed) would page forever; that ends the listing instead.

    Args:
        listed: the first page, a ``stripe.ListObject``.
        what: what is listed, for the message.

    Raises:
        StripeUnavailable: an id came back a second time, or an empty page said ``has_more``.
    """
    seen: set[str] = set()
    page = listed
    while True:
        for item in page.data:
            first_sight(str(item["id"] if "id" in item else id(item)), seen, what)
            yield item
        if not page.has_more:
            return
        if not page.data:
            raise stuck_page(what)
        page = page.next_page()


def first_sight(item_id: str, seen: set[str], what: str) -> None:
    """Note a listed id; one seen before means the pages do not advance, so the listing ends.

    Raises:
        StripeUnavailable: ``item_id`` was listed already.
    """
    if item_id in seen:
        raise StripeUnavailable(
            f"Stripe listed {what} {excerpt(item_id, 60)} twice: its pages do not "
            "advance (has_more without progress)"
        )
    seen.add(item_id)


def stuck_page(what: str) -> StripeUnavailable:
    """Return the error for an empty page that says ``has_more``: the pages do not advance."""
    return StripeUnavailable(
        f"Stripe answered an empty page of {what} with has_more: its pages do not "
        "advance (has_more without progress)"
    )


def movement_problem(amount: object, currency: object, texts: Mapping[str, object]) -> str | None:
    """Return why a money movement cannot be interpreted safely, or ``None`` (contract §4).

    Args:
        amount: the raw Stripe amount in minor units, as Stripe sent it.
        currency: the raw currency, as Stripe sent it.
        texts: every text the ledger entry would carry, by name (ids, company, subscription).
    """
    if not is_iso_currency(currency):
        return f"the currency {excerpt(str(currency), 20)!r} is not an ISO 4217 code"
    problem = minor_amount_problem(amount)
    if problem is not None:
        return problem
    for name, value in texts.items():
        found = text_problem(value) if isinstance(value, str) else None
        if found is not None:
            return f"{name} cannot be stored as it is: {found}"
    return None


def unreadable_object(
    stripe_object: StripeDict,
    reason: str,
    *,
    company_hint: str | None = None,
    customer_id: str | None = None,
) -> Unreadable:
    """Return the :class:`Unreadable` of a Stripe object, with every text made safe to store."""
    created = stripe_object.get("created")
    when = from_unix(created) if isinstance(created, int) and _plausible_unix(created) else None
    customer = customer_id or id_of(stripe_object.get("customer"))
    object_id = str(stripe_object.get("id") or "(no id)")
    metadata = stripe_object.get("metadata")
    subscription = metadata.get("moesif_subscription_id") if isinstance(metadata, dict) else None
    return Unreadable(
        source=UnreadableSource.STRIPE,
        object_id=excerpt(object_id, 500),
        reason=excerpt(reason, 500),
        company_hint=excerpt(company_hint, 500) if company_hint else None,
        customer_id=excerpt(customer, 500) if customer else None,
        created_at=when,
        excerpt=excerpt(repr({key: stripe_object.get(key) for key in _EXCERPT_KEYS})),
        transaction_id=excerpt(object_id, 500) if stripe_object.get("id") else None,
        subscription_hint=excerpt(subscription, 500) if isinstance(subscription, str) else None,
    )


_EXCERPT_KEYS = ("id", "object", "amount", "amount_received", "currency", "status", "created")


def _plausible_unix(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**33


def id_of(value: object) -> str | None:
    """Return the id of an expandable Stripe field: a bare id, an expanded object, or nothing."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, Mapping):
        found = value.get("id")
        return str(found) if found else None
    return None


CACHE_SIZE = 50_000
"""Objects each of the lookup's caches keeps, least recently used evicted first."""


class _Flight:
    """One fetch in flight: its leader holds ``landed`` until the answer (or its error) is set.

    A lock, not a ``concurrent.futures.Future``: a run maps every PaymentIntent through the
    cache once, and a Future (with its condition) cost more than the rest of the miss.
    """

    __slots__ = ("error", "landed", "value")

    def __init__(self) -> None:
        self.landed = threading.Lock()
        self.landed.acquire()
        self.value: object = None
        self.error: BaseException | None = None

    def land(self, value: object = None, error: BaseException | None = None) -> None:
        """Set the answer (or the error) and let every waiting follower have it."""
        self.value, self.error = value, error
        self.landed.release()

    def result(self) -> object:
        """Wait for the leader, then return its answer or raise its error."""
        with self.landed:
            pass
        if self.error is not None:
            raise self.error
        return self.value


class _Cache:
    """A thread-safe, bounded memo with single flight: concurrent misses on a key fetch it once.

    The first thread to miss a key fetches it; the others wait for that answer (or its error)
    instead of asking Stripe again. At most ``size`` answers are kept, least recently used out.
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._values: OrderedDict[str, object] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: str, fetch: Callable[[], _V]) -> _V:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]  # type: ignore[return-value]
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            return flight.result()  # type: ignore[return-value]
        try:
            value = fetch()
        except BaseException as error:
            with self._lock:
                del self._flights[key]
            flight.land(error=error)
            raise
        with self._lock:
            del self._flights[key]
            self._values[key] = value
            if len(self._values) > self._size:
                self._values.popitem(last=False)
        flight.land(value)
        return value


class StripeLookup:
    """Fetches and caches, for one run, the Stripe objects that mapping decisions need.

    Thread-safe: the extractor's workers share one lookup.
    """

    def __init__(self, client: stripe.StripeClient) -> None:
        """Use ``client``, whose pinned API version decides whether PaymentIntents name invoices."""
        self._client = client
        self._no_invoice_payments = False
        self._no_invoice_payments_lock = threading.Lock()
        self._customers = _Cache()
        self._subscriptions = _Cache()
        self._topups = _Cache()
        self._charges = _Cache()

    def customer(self, customer_id: str) -> StripeDict:
        """Return a customer by id."""
        return self._customers.get(
            customer_id, lambda: self._client.v1.customers.retrieve(customer_id).to_dict()
        )

    def _customer_of(self, payment_intent: StripeDict) -> StripeDict:
        """Return a PaymentIntent's customer: as listed when expanded, else fetched by id."""
        named = payment_intent.get("customer")
        if isinstance(named, dict) and named.get("id"):
            return named
        return self.customer(str(id_of(named)))

    def live_subscriptions(self, customer_id: str) -> list[str]:
        """Return the ids of a customer's Stripe subscriptions that are not canceled."""
        return self._subscriptions.get(customer_id, lambda: self._fetch_live(customer_id))

    def _fetch_live(self, customer_id: str) -> list[str]:
        listed = self._client.v1.subscriptions.list(
            params={"customer": customer_id, "status": "all", "limit": 100}
        )
        return live_subscription_ids(
            (item.to_dict() for item in paged(listed, "subscriptions")), customer_id
        )

    def invoice_linked(self, payment_intent: StripeDict) -> bool:
        """Return whether Stripe links a PaymentIntent to an invoice, for the pinned version.

        A PaymentIntent that names ``invoice`` is read as it is, in any version. Otherwise the
        link is looked up in ``/v1/invoice_payments``, and only an InvoicePayment whose
        ``payment.payment_intent`` is this PaymentIntent counts (a server may ignore the
        filter and list others). A server without that endpoint (404, 405 or 501, in any body
        shape) links none, said once in the log.
        """
        if "invoice" in payment_intent:
            return bool(payment_intent.get("invoice"))
        if self._no_invoice_payments:
            return False
        payment_intent_id = str(payment_intent["id"])
        try:
            listed = self._client.v1.invoice_payments.list(
                params={
                    "payment": {"type": "payment_intent", "payment_intent": payment_intent_id},
                    "limit": INVOICE_PAYMENT_PAGE,
                }
            )
            return any(
                pays_payment_intent(item.to_dict(), payment_intent_id)
                for item in paged(listed, "invoice payments")
            )
        except stripe.StripeError as error:
            if error.http_status not in _NO_ENDPOINT_STATUSES:
                raise
            self._note_no_invoice_payments()
            return False

    def _note_no_invoice_payments(self) -> None:
        """Remember that the server has no ``/v1/invoice_payments``; warn the first time only."""
        with self._no_invoice_payments_lock:
            known, self._no_invoice_payments = self._no_invoice_payments, True
        if not known:
            logger.warning(
                "this Stripe server has no /v1/invoice_payments; no payment is taken as an "
                "invoice payment unless it names its invoice"
            )

    def topup(self, payment_intent: StripeDict) -> TopUp | None:
        """Return where a PaymentIntent's credit belongs, or ``None`` when it is no top-up."""
        return self._topups.get(str(payment_intent["id"]), lambda: self._map(payment_intent))

    def topup_by_id(self, payment_intent_id: str) -> TopUp | None:
        """Return :meth:`topup` of a PaymentIntent known only by id (fetched once)."""
        return self._topups.get(
            payment_intent_id,
            lambda: self._map(
                self._client.v1.payment_intents.retrieve(payment_intent_id).to_dict()
            ),
        )

    def payment_intent_of_charge(self, charge_id: str) -> str | None:
        """Return the PaymentIntent id of a charge (fetched once)."""
        return self._charges.get(
            charge_id,
            lambda: id_of(
                self._client.v1.charges.retrieve(charge_id).to_dict().get("payment_intent")
            ),
        )

    def topup_of(self, movement: StripeDict) -> TopUp | None:
        """Return the top-up a refund or dispute moves money of, via its PaymentIntent or charge.

        A PaymentIntent expanded in the movement is used as it came (no request).
        """
        named = movement.get("payment_intent")
        if isinstance(named, dict) and named.get("id"):
            return self.topup(named)
        payment_intent_id = id_of(named)
        charge_id = id_of(movement.get("charge"))
        if payment_intent_id is None and charge_id is not None:
            payment_intent_id = self.payment_intent_of_charge(charge_id)
        return self.topup_by_id(payment_intent_id) if payment_intent_id else None

    def _map(self, payment_intent: StripeDict) -> TopUp | None:
        if not is_topup(payment_intent, invoice_linked=False):
            return None
        if self.invoice_linked(payment_intent):
            return None
        customer = self._customer_of(payment_intent)
        live = (
            self.live_subscriptions(str(customer["id"]))
            if needs_subscription_list(payment_intent, customer)
            else None
        )
        return map_topup(payment_intent, customer, live)
