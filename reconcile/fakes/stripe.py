"""A fake Stripe API on 127.0.0.1 for tests and the demo: real HTTP, Stripe's list semantics.

Object shapes start from Stripe's own example objects (``stripe_fixtures.json`` beside this module,
trimmed from github.com/stripe/openapi ``openapi/fixtures3.json``, MIT) with fields overridden.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import hmac
import itertools
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit

import httpx

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
Query = dict[str, str]

TEMPLATES: dict[str, Obj] = {
    name: template
    for name, template in json.loads(
        resources.files("reconcile.fakes")
        .joinpath("stripe_fixtures.json")
        .read_text(encoding="utf-8")
    ).items()
    if not name.startswith("_")
}
"""Stripe's example object of each type this fake serves, by ``object`` name."""

DEFAULT_VERSION = "2025-02-24.acacia"

FINAL_INVOICE_LINK_VERSION = "2025-03-31"
"""From this API version (basil) on, Stripe's PaymentIntents no longer name their invoice."""

DEFAULT_ORDER_SEED = 20261202
"""The seed every fake uses unless told otherwise: objects created in one second list shuffled."""

COLLECTIONS = {
    "customers": "customer",
    "subscriptions": "subscription",
    "payment_intents": "payment_intent",
    "charges": "charge",
    "refunds": "refund",
    "disputes": "dispute",
    "balance_transactions": "balance_transaction",
    "invoice_payments": "invoice_payment",
}
"""The list URLs the fake serves (``/v1/<collection>``) and the object each holds."""
_PREFIXES = {
    "customer": "cus",
    "subscription": "sub",
    "payment_intent": "pi",
    "charge": "ch",
    "refund": "re",
    "dispute": "dp",
    "balance_transaction": "txn",
    "invoice_payment": "inpay",
}
_BY_PREFIX = {prefix: kind for kind, prefix in _PREFIXES.items()}
_LIST_FILTERS = {
    "customer": ("customer",),
    "subscription": ("customer",),
    "payment_intent": ("customer",),
    "charge": ("customer", "payment_intent"),
    "refund": ("charge", "payment_intent"),
    "dispute": ("charge", "payment_intent"),
    "balance_transaction": ("type", "source"),
    "invoice_payment": ("invoice", "payment[payment_intent]", "payment[type]"),
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake answered, for tests to assert on."""

    method: str
    path: str
    query: Query
    stripe_version: str | None
    status: int


@dataclass
class _Fault:
    status: int
    headers: dict[str, str]
    remaining: int


@dataclass
class _State:
    objects: dict[str, dict[str, Obj]] = field(
        default_factory=lambda: {kind: {} for kind in _PREFIXES}
    )
    faults: list[_Fault] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    garbles: list[tuple[str, int]] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)


@dataclass(frozen=True)
class _Index:
    """Stored objects of one kind in list order (oldest first), for lists served without a scan."""

    items: list[Obj]
    created: list[int]
    position: dict[str, int]


class StripeApiError(Exception):
    """An error the fake answers with, in Stripe's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str = "invalid_request_error",
        headers: Mapping[str, str] | None = None,
        **extra: str,
    ) -> None:
        """Describe the answer: HTTP status, Stripe error type and message."""
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": error_type, "message": message, **extra}}
        self.headers = dict(headers or {})


class FakeStripe:
    """A Stripe API server on 127.0.0.1 in a background thread; a context manager.

    Seed it with ``add_*`` methods, point the SDK at :attr:`base_url`, inject faults with
    :meth:`fail_next` and :meth:`delay_next`. Thread-safe; silent on stderr.
    """

    def __init__(
        self,
        api_key: str = "sk_test_fake",
        *,
        default_version: str = DEFAULT_VERSION,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        serve: Collection[str] | None = None,
        unknown_url: tuple[int, Obj] | None = None,
        ignore_filters: Collection[str] = (),
        echo_key: bool = False,
        order_seed: int | None = DEFAULT_ORDER_SEED,
    ) -> None:
        """Accept only ``api_key``; answer without ``Stripe-Version`` as ``default_version``.

        The other switches play Stripe-compatible servers that differ from Stripe:

        - ``serve`` limits the collections served (``"invoice_payments"``, ...); the others
          answer as unknown URLs.
        - ``unknown_url`` is the status and JSON body of that answer, instead of Stripe's 404
          in Stripe's error shape (e.g. ``(405, {"detail": "Method Not Allowed"})``).
        - ``ignore_filters`` names collections whose lists ignore every filter but ``created``
          (``customer``, ``payment[...]``, ``status``...) and list everything.
        - ``echo_key`` ends every error message with the API key the request presented.

        Lists are newest first by ``created``, as Stripe documents; Stripe promises no order
        among objects created in the same second, so ``order_seed`` permutes those ties
        (``None`` orders them by id). Cursors, ``created`` filters and ``has_more`` follow
        the one order the list serves.
        """
        self.api_key = api_key
        self.default_version = default_version
        self._served = frozenset(serve) if serve is not None else frozenset(COLLECTIONS)
        self._unknown_url = unknown_url
        self._unfiltered = frozenset(COLLECTIONS[name] for name in ignore_filters)
        self._echo_key = echo_key
        self._order_seed = order_seed
        self._clock = clock
        self._state = _State()
        self._indexes: dict[str, _Index] = {}
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._live = LivePayments(self)

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> FakeStripe:
        """Start serving."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop serving."""
        self.stop()

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1 and serve in a daemon thread."""
        server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-stripe",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def base_url(self) -> str:
        """The URL to give the SDK as its API base (``http://127.0.0.1:<port>``)."""
        if self._server is None:
            raise RuntimeError("the fake Stripe is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def objects(self, kind: str) -> list[Obj]:
        """Return copies of every stored object of ``kind`` (``payment_intent``, ``refund``...)."""
        with self._lock:
            return [copy.deepcopy(item) for item in self._state.objects[kind].values()]

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request answered so far, oldest first."""
        with self._lock:
            return list(self._state.requests)

    # -- seeding --------------------------------------------------------------------------------

    def add_customer(self, id: str | None = None, metadata: Mapping[str, str] | None = None) -> str:  # noqa: A002
        """Create a customer; return its id."""
        return self._store(
            "customer", {"id": id, "metadata": dict(metadata or {}), "created": self._now()}
        )

    def add_subscription(
        self, customer: str, status: str = "active", *, created: datetime | None = None
    ) -> str:
        """Create a subscription of ``customer`` in ``status``; return its id."""
        moment = self._unix(created)
        return self._store(
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
        moment = self._unix(created)
        with self._lock:
            payment_intent_id = self._store(
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
                self._charge(payment_intent_id, moment)
            if invoice is not None:
                self._invoice_payment(payment_intent_id, invoice, moment)
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
        moment = self._unix(created)
        with self._lock:
            intent = self._get("payment_intent", payment_intent)
            charge = self._get("charge", intent["latest_charge"])
            amount = charge["amount"] - charge["amount_refunded"] if amount is None else amount
            refund_id = self._store(
                "refund",
                {
                    "amount": amount,
                    "charge": charge["id"],
                    "payment_intent": payment_intent if name_payment_intent else None,
                    "currency": intent["currency"],
                    "status": status,
                    "created": moment,
                },
            )
            if status in ("succeeded", "pending"):
                charge["amount_refunded"] += amount
                charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
                transaction = self._transaction(
                    refund_id, -amount, intent["currency"], "refund", "refund", moment
                )
                self._get("refund", refund_id)["balance_transaction"] = transaction
        return refund_id

    def fail_refund(self, refund_id: str, created: datetime | None = None) -> str:
        """Fail a refund, returning its money (a ``refund_failure`` credit); return that id."""
        with self._lock:
            refund = self._get("refund", refund_id)
            refund["status"] = "failed"
            return self._transaction(
                refund_id,
                refund["amount"],
                refund["currency"],
                "refund_failure",
                "refund_failure",
                self._unix(created),
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
        moment = self._unix(created)
        with self._lock:
            intent = self._get("payment_intent", payment_intent)
            charge = self._get("charge", intent["latest_charge"])
            amount = charge["amount"] if amount is None else amount
            dispute_id = self._store(
                "dispute",
                {
                    "amount": amount,
                    "charge": charge["id"],
                    "payment_intent": payment_intent,
                    "currency": intent["currency"],
                    "status": "needs_response",
                    "created": moment,
                    "balance_transactions": [],
                },
            )
            charge["disputed"] = True
            bt_amount, bt_currency = settled or (amount, intent["currency"])
            transaction = self._transaction(
                dispute_id, -abs(bt_amount), bt_currency, "adjustment", "dispute", moment
            )
            self._get("dispute", dispute_id)["balance_transactions"].append(transaction)
        return dispute_id

    def reinstate_dispute(
        self,
        dispute_id: str,
        created: datetime | None = None,
        *,
        settled: tuple[int, str] | None = None,
    ) -> str:
        """Win a dispute: funds reinstated (a ``dispute_reversal`` credit); return that id."""
        with self._lock:
            dispute = self._get("dispute", dispute_id)
            dispute["status"] = "won"
            bt_amount, bt_currency = settled or (dispute["amount"], dispute["currency"])
            transaction = self._transaction(
                dispute_id,
                abs(bt_amount),
                bt_currency,
                "adjustment",
                "dispute_reversal",
                self._unix(created),
            )
            dispute["balance_transactions"].append(transaction)
            return transaction

    def set_status(self, payment_intent: str, status: str) -> None:
        """Move a PaymentIntent to ``status`` (a processing one that succeeds gets its charge)."""
        with self._lock:
            intent = self._get("payment_intent", payment_intent)
            intent["status"] = status
            if status == "succeeded" and not intent["latest_charge"]:
                intent["amount_received"] = intent["amount"]
                self._charge(payment_intent, intent["created"])

    # -- faults ---------------------------------------------------------------------------------

    def fail_next(
        self, status: int, count: int = 1, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer the next ``count`` requests with ``status`` (and ``headers``) before any work."""
        with self._lock:
            self._state.faults.append(_Fault(status, dict(headers or {}), count))

    def clear_faults(self) -> None:
        """Drop every fault and delay not yet used."""
        with self._lock:
            self._state.faults.clear()
            self._state.delays.clear()

    def delay_next(self, seconds: float, count: int = 1) -> None:
        """Wait ``seconds`` before answering each of the next ``count`` requests."""
        with self._lock:
            self._state.delays.extend([seconds] * count)

    def garble_next(self, kind: str = "html", count: int = 1, status: int = 200) -> None:
        """Answer the next ``count`` requests with ``status`` and a spoiled body, doing no work.

        ``kind`` is ``html`` (a proxy's error page), ``truncated`` (a list cut in half),
        ``array`` (a JSON array where an object belongs) or ``non_utf8`` (bytes that are not
        UTF-8).
        """
        if kind not in _GARBLED:
            raise ValueError(f"unknown garble {kind!r}; one of {', '.join(_GARBLED)}")
        with self._lock:
            self._state.garbles.extend([(kind, status)] * count)

    repeat_pages = False
    """When set, every list answers its first page with ``has_more`` whatever the cursor."""

    # -- serving --------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], payload: bytes = b""
    ) -> tuple[int, Obj | bytes, dict[str, str]]:
        """Answer one request: return status, JSON body (or raw bytes) and extra headers."""
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        version = headers.get("stripe-version") or self.default_version
        self._pause()
        with self._lock:
            garble = self._state.garbles.pop(0) if self._state.garbles else None
        if garble is not None:
            with self._lock:
                self._state.requests.append(
                    RecordedRequest(
                        method, parts.path, query, headers.get("stripe-version"), garble[1]
                    )
                )
            return garble[1], _GARBLED[garble[0]], {}
        extra: dict[str, str] = {}
        try:
            if method == "POST":
                status, body = 200, self._post(parts.path, headers, payload)
            else:
                status, body = 200, self._route(method, parts.path, query, headers, version)
        except StripeApiError as error:
            status, body, extra = error.status, error.body, error.headers
            if self._echo_key and "error" in body:
                presented = headers.get("authorization", "").removeprefix("Bearer ").strip()
                body["error"]["message"] += f" (key {presented})"
        with self._lock:
            self._state.requests.append(
                RecordedRequest(method, parts.path, query, headers.get("stripe-version"), status)
            )
        return status, body, extra

    def _pause(self) -> None:
        with self._lock:
            delay = self._state.delays.pop(0) if self._state.delays else 0.0
        if delay > 0:
            time.sleep(delay)

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            if not self._state.faults:
                return None
            fault = self._state.faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._state.faults.pop(0)
            return fault

    def _route(
        self, method: str, path: str, query: Query, headers: Mapping[str, str], version: str
    ) -> Obj:
        fault = self._take_fault()
        if fault is not None:
            raise _fault_error(fault)
        self._authenticate(headers)
        # The SDK quotes ids as a form does (quote_plus); take them back as it does.
        segments = [unquote_plus(part) for part in path.split("/") if part]
        if method != "GET" or len(segments) not in (2, 3) or segments[0] != "v1":
            raise self._unrecognized(method, path)
        kind = COLLECTIONS.get(segments[1]) if segments[1] in self._served else None
        if kind is None:
            raise self._unrecognized(method, path)
        with self._lock:
            if len(segments) == 3:
                return self._retrieve(kind, segments[2], query, version)
            return self._list(kind, path, query, version)

    def _post(self, path: str, headers: Mapping[str, str], body: bytes) -> Obj:
        """Create and confirm PaymentIntents (the only writes the fake serves)."""
        fault = self._take_fault()
        if fault is not None:
            raise _fault_error(fault)
        self._authenticate(headers)
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        return self._live.post(path, form, headers.get("idempotency-key"))

    # -- the live path: payment methods, PaymentIntents, events, webhooks -----------------------

    def set_default_payment_method(self, customer: str, payment_method: str) -> None:
        """Save ``payment_method`` (a test card such as ``pm_card_visa``) as the default."""
        with self._lock:
            self._get("customer", customer)["invoice_settings"] = {
                "custom_fields": None,
                "default_payment_method": payment_method,
                "footer": None,
                "rendering_options": None,
            }

    def emit_event(self, event_type: str, kind: str, object_id: str) -> str:
        """Create an event of ``event_type`` about a stored object, as Stripe creates it."""
        return self._live.emit(event_type, kind, object_id)

    def events(self) -> list[Obj]:
        """Return every event created so far, oldest first."""
        return self._live.events()

    def configure_webhook(
        self,
        url: str,
        secret: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = 3,
        duplicates: bool = False,
    ) -> None:
        """Deliver events to ``url`` signed with ``secret`` when :meth:`deliver` is called.

        A non-2xx answer is retried ``attempts`` times in all, waiting with ``sleep``;
        ``duplicates`` sends every event twice, as Stripe may.
        """
        self._live.endpoint = WebhookEndpoint(url, secret, sleep, attempts, duplicates)

    def deliver(self) -> list[int]:
        """Deliver every event not delivered yet; return the final status of each delivery."""
        return self._live.deliver()

    def _unrecognized(self, method: str, path: str) -> StripeApiError:
        error = StripeApiError(404, f"Unrecognized request URL ({method}: {path}).")
        if self._unknown_url is not None:
            error.status, error.body = self._unknown_url[0], copy.deepcopy(self._unknown_url[1])
        return error

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        given = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if given != self.api_key:
            masked = f"{given[:8]}{'*' * max(0, len(given) - 12)}{given[-4:]}" if given else ""
            raise StripeApiError(401, f"Invalid API Key provided: {masked}")

    def _retrieve(self, kind: str, object_id: str, query: Query, version: str) -> Obj:
        found = self._state.objects[kind].get(object_id)
        if found is None:
            raise StripeApiError(
                404, f"No such {kind}: '{object_id}'", code="resource_missing", param="id"
            )
        return self._render(found, version, _expansions(query, ""))

    def _list(self, kind: str, path: str, query: Query, version: str) -> Obj:
        limit = _limit(query)
        filtered = kind not in self._unfiltered
        if self.repeat_pages:
            page, has_more = self._indexed_page(kind, {**query, "starting_after": ""}, limit)
            has_more = True
        elif query.get("ending_before"):
            items = [
                item
                for item in self._ordered(kind)
                if _matches(item, kind, query, filtered=filtered)
            ]
            page, has_more = _page(items, query, limit)
        else:
            page, has_more = self._indexed_page(kind, query, limit)
        expand = _expansions(query, "data.")
        return {
            "object": "list",
            "data": [self._render(item, version, expand) for item in page],
            "has_more": has_more,
            "url": path,
        }

    def _indexed_page(self, kind: str, query: Query, limit: int) -> tuple[list[Obj], bool]:
        """Return one page, newest first, reading only the index range the query can reach."""
        index = self._index(kind)
        low, high = _created_bounds(query)
        start = bisect.bisect_left(index.created, low)
        stop = bisect.bisect_right(index.created, high)
        cursor = query.get("starting_after")
        filtered = kind not in self._unfiltered
        if cursor:
            position = index.position.get(cursor)
            if position is None or not _matches(
                index.items[position], kind, query, filtered=filtered
            ):
                raise StripeApiError(400, f"No such object: '{cursor}'", param="starting_after")
            stop = min(stop, position)
        page: list[Obj] = []
        for position in range(stop - 1, start - 1, -1):
            item = index.items[position]
            if _matches(item, kind, query, filtered=filtered):
                if len(page) == limit:
                    return page, True
                page.append(item)
        return page, False

    def _ordered(self, kind: str) -> list[Obj]:
        """Return every stored object of ``kind``, newest first (as lists serve them)."""
        return self._index(kind).items[::-1]

    def _index(self, kind: str) -> _Index:
        """Return the list index of ``kind`` by ``(created, id)``; a store rebuilds it."""
        index = self._indexes.get(kind)
        if index is None:
            items = sorted(self._state.objects[kind].values(), key=self._listing_key)
            index = _Index(
                items=items,
                created=[item["created"] for item in items],
                position={item["id"]: number for number, item in enumerate(items)},
            )
            self._indexes[kind] = index
        return index

    def _listing_key(self, item: Obj) -> tuple[int, bytes, str]:
        """Order by ``created``; ties in a permutation fixed by the seed (or by id)."""
        if self._order_seed is None:
            return (item["created"], b"", item["id"])
        tie = hashlib.blake2b(f"{self._order_seed}:{item['id']}".encode(), digest_size=8)
        return (item["created"], tie.digest(), item["id"])

    def _render(self, item: Obj, version: str, expand: set[str]) -> Obj:
        rendered = copy.deepcopy(item)
        if item["object"] == "payment_intent" and version[:10] >= FINAL_INVOICE_LINK_VERSION:
            rendered.pop("invoice", None)
        for name in expand:
            value = rendered.get(name)
            if isinstance(value, str) and value.split("_", 1)[0] in _BY_PREFIX:
                target = self._state.objects[_BY_PREFIX[value.split("_", 1)[0]]].get(value)
                if target is not None:
                    rendered[name] = self._render(target, version, set())
        return rendered

    # -- storage helpers ------------------------------------------------------------------------

    def _store(self, kind: str, fields: Obj) -> str:
        with self._lock:
            item = copy.deepcopy(TEMPLATES[kind])
            item.update({name: value for name, value in fields.items() if name != "id"})
            item["id"] = fields.get("id") or f"{_PREFIXES[kind]}_fake{next(self._ids):012d}"
            self._state.objects[kind][item["id"]] = item
            self._indexes.pop(kind, None)
            return str(item["id"])

    def _get(self, kind: str, object_id: str) -> Obj:
        found = self._state.objects[kind].get(object_id)
        if found is None:
            raise KeyError(f"the fake Stripe has no {kind} {object_id}")
        return found

    def _charge(self, payment_intent_id: str, moment: int) -> None:
        intent = self._get("payment_intent", payment_intent_id)
        charge_id = self._store(
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
        self._get("charge", charge_id)["balance_transaction"] = self._transaction(
            charge_id, intent["amount"], intent["currency"], "charge", "charge", moment
        )

    def _invoice_payment(self, payment_intent_id: str, invoice: str, moment: int) -> None:
        intent = self._get("payment_intent", payment_intent_id)
        self._store(
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

    def _transaction(
        self, source: str, amount: int, currency: str, kind: str, category: str, moment: int
    ) -> str:
        return self._store(
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

    def _now(self) -> int:
        return int(self._clock().timestamp())

    def _unix(self, moment: datetime | None) -> int:
        return self._now() if moment is None else int(moment.timestamp())


_GARBLED = {
    "html": b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    "truncated": b'{"object": "list", "data": [{"id": "pi_',
    "array": b'[{"id": "pi_1", "object": "payment_intent"}]',
    "non_utf8": b'{"object": "list", "data": [], "url": "\xff\xfe"}',
}
"""Spoiled bodies :meth:`FakeStripe.garble_next` answers with."""


def _content_type(payload: bytes) -> str:
    return "text/html" if payload.startswith(b"<html") else "application/json"


def _fault_error(fault: _Fault) -> StripeApiError:
    if fault.status == 429:
        return StripeApiError(
            429,
            "Too many requests hit the API too quickly.",
            headers=fault.headers,
            code="rate_limit",
        )
    return StripeApiError(
        fault.status, "An unknown error occurred.", error_type="api_error", headers=fault.headers
    )


def _limit(query: Query) -> int:
    raw = query.get("limit", "10")
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise StripeApiError(
            400,
            "Invalid integer: limit must be between 1 and 100.",
            code="parameter_invalid_integer",
            param="limit",
        )
    return int(raw)


def _matches(item: Obj, kind: str, query: Query, *, filtered: bool = True) -> bool:
    if not _created_matches(item["created"], query):
        return False
    if not filtered:
        return True
    for name in _LIST_FILTERS[kind]:
        if name in query and str(_field(item, name) or "") != query[name]:
            return False
    if kind == "subscription":
        return _subscription_status_matches(item["status"], query.get("status"))
    return True


def _field(item: Obj, name: str) -> object:
    if "[" not in name:
        return item.get(name)
    outer, inner = name.rstrip("]").split("[", 1)
    value = item.get(outer)
    return value.get(inner) if isinstance(value, dict) else None


def _created_matches(created: int, query: Query) -> bool:
    checks: dict[str, Callable[[int, int], bool]] = {
        "gte": lambda a, b: a >= b,
        "gt": lambda a, b: a > b,
        "lte": lambda a, b: a <= b,
        "lt": lambda a, b: a < b,
    }
    if "created" in query:
        return created == _integer(query["created"], "created")
    return all(
        check(created, _integer(query[f"created[{name}]"], f"created[{name}]"))
        for name, check in checks.items()
        if f"created[{name}]" in query
    )


def _created_bounds(query: Query) -> tuple[float, float]:
    """Return the inclusive range of ``created`` a list query can match."""
    low, high = -math.inf, math.inf
    if "created" in query:
        exact = _integer(query["created"], "created")
        return exact, exact
    for name in ("gte", "gt", "lte", "lt"):
        key = f"created[{name}]"
        if key in query:
            value = _integer(query[key], key)
            if name in ("gte", "gt"):
                low = max(low, value + (name == "gt"))
            else:
                high = min(high, value - (name == "lt"))
    return low, high


def _integer(raw: str, param: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise StripeApiError(400, f"Invalid integer: {raw}", param=param) from None


def _subscription_status_matches(status: str, wanted: str | None) -> bool:
    if wanted == "all":
        return True
    if wanted is None:
        return status not in ("canceled", "incomplete_expired")
    if wanted == "ended":
        return status in ("canceled", "incomplete_expired")
    return status == wanted


def _page(items: list[Obj], query: Query, limit: int) -> tuple[list[Obj], bool]:
    ids = [item["id"] for item in items]
    if query.get("starting_after"):
        start = _cursor(ids, query["starting_after"]) + 1
        return items[start : start + limit], len(items) > start + limit
    if query.get("ending_before"):
        end = _cursor(ids, query["ending_before"])
        return items[max(0, end - limit) : end], end - limit > 0
    return items[:limit], len(items) > limit


def _cursor(ids: list[str], cursor: str) -> int:
    if cursor not in ids:
        raise StripeApiError(400, f"No such object: '{cursor}'", param="starting_after")
    return ids.index(cursor)


def _expansions(query: Query, prefix: str) -> set[str]:
    return {
        value.removeprefix(prefix)
        for name, value in query.items()
        if name.startswith("expand[") and value.startswith(prefix)
    }


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

    def __init__(self, fake: FakeStripe) -> None:
        """Serve for ``fake`` (its lock, store and clock)."""
        self._fake = fake
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
        with self._fake._lock:
            now = self._fake._now()
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
            intent = self._fake._get("payment_intent", segments[2])
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
        if customer is not None and customer not in self._fake._state.objects["customer"]:
            raise StripeApiError(404, f"No such customer: '{customer}'", code="resource_missing")
        metadata = {
            name[len("metadata[") : -1]: value
            for name, value in form.items()
            if name.startswith("metadata[") and name.endswith("]")
        }
        intent_id = self._fake._store(
            "payment_intent",
            {
                "amount": amount,
                "amount_received": 0,
                "currency": form.get("currency", "usd").lower(),
                "customer": customer,
                "metadata": metadata,
                "payment_method": form.get("payment_method"),
                "status": "requires_confirmation",
                "created": self._fake._now(),
                "invoice": None,
                "latest_charge": None,
                "canceled_at": None,
                "last_payment_error": None,
            },
        )
        intent = self._fake._get("payment_intent", intent_id)
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
            self._fake._charge(intent["id"], intent["created"])
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
        with self._fake._lock:
            return self._event(event_type, self._fake._get(kind, object_id))

    def _event(self, event_type: str, obj: Obj) -> str:
        rendered = copy.deepcopy(obj)
        if rendered.get("object") == "dispute":
            rendered["balance_transactions"] = [
                copy.deepcopy(self._fake._get("balance_transaction", txn))
                for txn in obj.get("balance_transactions", [])
            ]
        event_id = f"evt_fake{next(self._fake._ids):012d}"
        self._events.append(
            {
                "id": event_id,
                "object": "event",
                "api_version": self._fake.default_version,
                "created": self._fake._now(),
                "data": {"object": rendered},
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "type": event_type,
            }
        )
        return event_id

    def events(self) -> list[Obj]:
        """Return every event created so far, oldest first."""
        with self._fake._lock:
            return copy.deepcopy(self._events)

    def deliver(self) -> list[int]:
        """POST each event not delivered yet to the endpoint, signed; retry non-2xx answers."""
        endpoint = self.endpoint
        if endpoint is None:
            raise RuntimeError("no webhook endpoint configured")
        with self._fake._lock:
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
            header = sign(payload, endpoint.secret, self._fake._now())
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: object, client_address: object) -> None:
        """Log at debug level only: a client going away mid-answer is part of the tests."""
        logger.debug("fake Stripe: a client went away mid-request", exc_info=True)


def _handler_for(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        timeout = 10

        def do_GET(self) -> None:  # noqa: N802
            self._answer("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._answer("POST")

        def do_DELETE(self) -> None:  # noqa: N802
            self._answer("DELETE")

        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            sent = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, body, extra = fake.handle(method, self.path, headers, sent)
            payload = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", _content_type(payload))
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Request-Id", f"req_fake{next(_request_ids):010d}")
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Stay quiet: tests and the demo own the terminal."""

    return Handler


_request_ids = itertools.count(1)
