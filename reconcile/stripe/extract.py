"""Read a window of Stripe history and yield the ledger entries Moesif should hold for it."""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Final, Generic, TypeVar

import stripe

from reconcile.domain.times import Window, from_unix
from reconcile.domain.values import ExpectedEntry, Unreadable
from reconcile.domain.vocab import EntryType, Source
from reconcile.errors import StripeUnavailable
from reconcile.stripe.client import get_json, stripe_errors
from reconcile.stripe.counterparts import (
    Paged,
    of_intent,
    of_refund,
    of_transaction,
)
from reconcile.stripe.mapping import (
    StripeDict,
    StripeLookup,
    TopUp,
    first_sight,
    id_of,
    movement_problem,
    stuck_page,
    unreadable_object,
)

logger = logging.getLogger(__name__)

SLICE_LENGTH = timedelta(days=1)
"""A long window is read as slices of this length, several at a time."""

WORKERS = 4
"""How many slices are read at once."""

PAGE_LIMIT = 100

EXPANSIONS: Final = {
    "payment_intents": ("data.customer",),
    "refunds": ("data.payment_intent", "data.payment_intent.customer"),
    "balance_transactions": ("data.source",),
}
"""What each list of a slice is read with: PaymentIntents with their customer, refunds with
their PaymentIntent and its customer (the lookup needs no request for them), balance
transactions with their source."""

_BALANCE_MOVEMENTS = {
    "dispute": (Source.DISPUTE, EntryType.DEBIT),
    "dispute_reversal": (Source.DISPUTE_REVERSAL, EntryType.CREDIT),
    "refund_failure": (Source.REFUND_FAILURE, EntryType.CREDIT),
}

_BY_ID = frozenset({"pi", "re", "txn"})
"""Id prefixes :func:`extract_by_ids` fetches: PaymentIntents, Refunds, balance transactions."""

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class ExtractProgress:
    """How far an extraction has got, for progress output."""

    slices_done: int
    slices_total: int
    entries: int


Progress = Callable[[ExtractProgress], None]
OnUnreadable = Callable[[Unreadable], None]
"""Receives each Stripe object the extraction could not interpret (never posted)."""

_POISON = (KeyError, TypeError, ValueError, ArithmeticError, AttributeError)
"""What interpreting a malformed Stripe object raises; such an object becomes unreadable."""


@dataclass(frozen=True)
class _Found:
    """An expected entry and the company it belongs to even when unmapped (for filtering)."""

    entry: ExpectedEntry
    company_hint: str


@dataclass(frozen=True)
class _Pending:
    """A top-up or refund whose outcome is not final yet, by when Stripe created it."""

    created: int


PENDING_PAYMENT_STATUSES = frozenset({"processing", "requires_capture"})
"""PaymentIntent statuses that may still end in money received (bank debits take days)."""

PENDING_REFUND_STATUSES = frozenset({"pending", "requires_action"})
"""Refund statuses that may still end in money returned."""


def extract(
    client: stripe.StripeClient,
    since: datetime,
    until: datetime,
    *,
    companies: Collection[str] = (),
    progress: Progress | None = None,
    on_pending: Callable[[datetime], None] | None = None,
    on_unreadable: OnUnreadable | None = None,
    on_paged: Callable[[Paged], None] | None = None,
    slice_length: timedelta = SLICE_LENGTH,
    workers: int = WORKERS,
) -> Iterator[ExpectedEntry]:
    """Yield each expected entry of Stripe objects created in ``[since, until)`` once.

    Args:
        client: the run's Stripe client (its pinned API version decides how invoice links are
            found).
        since: start of the window, inclusive (the caller includes the lookback).
        until: end of the window, exclusive.
        companies: when given, only entries of these Moesif companies (an unmapped entry counts
            for the company its customer names).
        progress: called after each slice is read.
        on_pending: called with the creation time of each top-up or refund that is not final
            yet, so that a later run can read it again once it is.
        on_unreadable: called once with each object that cannot be interpreted safely (bad
            currency or amount, text the database cannot hold, a malformed object); such an
            object yields no entry and never stops the extraction.
        on_paged: called with each balance transaction paged and each top-up, refund and
            dispute of prepaid credit read, for the control totals (see
            :mod:`reconcile.stripe.counterparts`); every company's, whatever ``companies`` says.
        slice_length: the window is read in slices of this length.
        workers: how many slices are read at once.

    Raises:
        CredentialsRejected: Stripe refused the key.
        StripeUnavailable: Stripe failed after retries.
    """
    slices = split_window(Window(since, until), slice_length)
    lookup = StripeLookup(client)
    wanted = frozenset(companies)
    seen_unreadable: set[str] = set()
    done = entries = 0
    with stripe_errors():
        for found in _as_read(
            lambda piece: slice_pages(client, lookup, piece, observe=on_paged is not None),
            slices,
            workers,
        ):
            if isinstance(found, _SliceRead):
                done += 1
                if progress is not None:
                    progress(ExtractProgress(done, len(slices), entries))
                continue
            for item in found:
                if isinstance(item, Unreadable):
                    _report(item, wanted, seen_unreadable, on_unreadable)
                    continue
                if not isinstance(item, _Found):
                    _aside(item, on_pending, on_paged)
                    continue
                entries += 1
                if not wanted or item.company_hint in wanted:
                    yield item.entry
    logger.info("read %d Stripe movements in %d slices", entries, len(slices))


def _aside(
    item: _Pending | Paged,
    on_pending: Callable[[datetime], None] | None,
    on_paged: Callable[[Paged], None] | None,
) -> None:
    """Hand a pending mark or a paged record to its callback."""
    if isinstance(item, _Pending):
        if on_pending is not None:
            on_pending(from_unix(item.created))
    elif on_paged is not None:
        on_paged(item)


def extract_by_ids(
    client: stripe.StripeClient,
    transaction_ids: Collection[str],
    *,
    companies: Collection[str] = (),
    on_unreadable: OnUnreadable | None = None,
) -> Iterator[ExpectedEntry]:
    """Yield the expected entry of each Stripe id given, fetched by id, once per id.

    For ids on ledger rows whose Stripe object lies outside the window read (late webhooks,
    older postings): each object is mapped exactly as :func:`extract` maps it. ``pi_`` is a
    PaymentIntent (a top-up credit, or nothing), ``re_`` a Refund (a debit), ``txn_`` a balance
    transaction (a dispute or refund-failure movement). Other prefixes, and ids Stripe answers
    404 for, yield nothing (logged at INFO).

    Args:
        client: the run's Stripe client.
        transaction_ids: ``transaction_id`` values seen on Moesif ledger rows.
        companies: when given, only entries of these Moesif companies (an unmapped entry counts
            for the company its customer names).
        on_unreadable: called once with each object that cannot be interpreted safely.

    Raises:
        CredentialsRejected: Stripe refused the key.
        StripeUnavailable: Stripe failed after retries.
    """
    lookup = StripeLookup(client)
    wanted = frozenset(companies)
    seen_unreadable: set[str] = set()
    with stripe_errors():
        for transaction_id in dict.fromkeys(transaction_ids):
            for item in _entries_of_id(client, lookup, transaction_id):
                if isinstance(item, Unreadable):
                    _report(item, wanted, seen_unreadable, on_unreadable)
                elif not wanted or item.company_hint in wanted:
                    yield item.entry


def _report(
    item: Unreadable, wanted: frozenset[str], seen: set[str], on_unreadable: OnUnreadable | None
) -> None:
    """Hand an unreadable object on once, when it may concern the companies asked for."""
    if item.object_id in seen:
        return
    seen.add(item.object_id)
    logger.warning("Stripe %s is unreadable: %s", item.object_id, item.reason)
    if on_unreadable is not None and (not wanted or item.company_hint in wanted):
        on_unreadable(item)


def _entries_of_id(
    client: stripe.StripeClient, lookup: StripeLookup, object_id: str
) -> list[_Found | Unreadable]:
    """Return the expected entries of one Stripe object known by id; none when it is unknown."""
    prefix = object_id.split("_", 1)[0]
    if prefix not in _BY_ID:
        logger.info("skipped %s: not a PaymentIntent, Refund or balance transaction id", object_id)
        return []
    try:
        found = _retrieve(client, prefix, object_id)
    except stripe.StripeError as error:
        if error.http_status != 404:
            raise
        logger.info("skipped %s: Stripe has no such object (HTTP 404)", object_id)
        return []
    if prefix == "pi":
        return _guarded(found, lambda: _topup_entries(found, lookup))
    if prefix == "re":
        return _guarded(found, lambda: _refund_entries(found, lookup))
    return _guarded(found, lambda: _balance_entries(found, client, lookup))


def _guarded(
    stripe_object: StripeDict, work: Callable[[], list[_Found | Unreadable]]
) -> list[_Found | Unreadable]:
    """Return ``work()``, or the object as unreadable when it is too malformed to interpret."""
    try:
        return work()
    except _POISON as error:
        reason = f"the object is malformed ({type(error).__name__}: {error})"
        return [unreadable_object(stripe_object, reason)]


def _retrieve(client: stripe.StripeClient, prefix: str, object_id: str) -> StripeDict:
    """Return the object an id of ``prefix`` names, a balance transaction with its source."""
    if prefix == "pi":
        return client.v1.payment_intents.retrieve(object_id).to_dict()
    if prefix == "re":
        return client.v1.refunds.retrieve(object_id).to_dict()
    return client.v1.balance_transactions.retrieve(
        object_id, params={"expand": ["source"]}
    ).to_dict()


def split_window(window: Window, length: timedelta) -> list[Window]:
    """Return ``window`` cut into consecutive slices of at most ``length``."""
    pieces = []
    start = window.since
    while start < window.until:
        end = min(start + length, window.until)
        pieces.append(Window(start, end))
        start = end
    return pieces


class _SliceRead:
    """What :func:`_as_read` yields when one more slice has been read to its end."""


_SLICE_READ: Final = _SliceRead()

PAGES_BUFFERED = 16
"""Pages read ahead of the consumer, across the workers: the extraction's memory bound."""


class _Cancelled(Exception):
    """The consumer stopped listening; a worker ends its slice."""


class _Handover(Generic[_R]):
    """A bounded queue from the slice workers to the consumer, which can be closed."""

    def __init__(self) -> None:
        self.ready: queue.Queue[_R | _SliceRead | BaseException] = queue.Queue(PAGES_BUFFERED)
        self.closed = threading.Event()

    def put(self, value: _R | _SliceRead | BaseException) -> None:
        """Wait for room and queue ``value``; raise :class:`_Cancelled` once closed."""
        while not self.closed.is_set():
            try:
                self.ready.put(value, timeout=0.05)
            except queue.Full:
                continue
            return
        raise _Cancelled

    def run(self, work: Callable[[_T], Iterator[_R]], item: _T) -> None:
        """Hand over each page of ``work(item)``, then the end mark, or the error it raised."""
        try:
            for page in work(item):
                self.put(page)
            self.put(_SLICE_READ)
        except _Cancelled:
            return
        except BaseException as error:  # handed to the consumer, which raises it
            with suppress(_Cancelled):
                self.put(error)


def _as_read(
    work: Callable[[_T], Iterator[_R]], items: Sequence[_T], workers: int
) -> Iterator[_R | _SliceRead]:
    """Yield every page of ``work(item)`` for each item, as read, then each item's end mark.

    At most ``workers`` items are read at once, each page handed over as soon as it is read, in
    whatever order the workers read them; at most :data:`PAGES_BUFFERED` pages wait for the
    consumer, so memory stays bounded by a few pages whatever the window's length. After an
    item's last page comes :data:`_SLICE_READ`. A worker's error is raised here, and stops the
    others, as does the consumer leaving early.
    """
    handover: _Handover[_R] = _Handover()
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="stripe-slice")
    try:
        for item in items:
            pool.submit(handover.run, work, item)
        ended = 0
        while ended < len(items):
            value = handover.ready.get()
            if isinstance(value, BaseException):
                raise value
            ended += isinstance(value, _SliceRead)
            yield value
    finally:
        handover.closed.set()
        pool.shutdown(wait=True, cancel_futures=True)


def slice_pages(
    client: stripe.StripeClient, lookup: StripeLookup, piece: Window, *, observe: bool = False
) -> Iterator[list[_Found | _Pending | Unreadable | Paged]]:
    """Yield the expected entries of one slice page by page.

    The entries are top-ups, refunds, and dispute and refund-failure movements.
    Top-ups and refunds still on their way come as :class:`_Pending` marks. With ``observe``,
    what was paged comes too, for the control totals. PaymentIntents are listed with their
    customer, refunds with their PaymentIntent and its customer: the lookup needs no request for
    them (a day's top-ups may outnumber its cache, and each refund would fetch its payment again).
    """
    low, high = _ceil_unix(piece.since), _ceil_unix(piece.until)
    created = {"created": {"gte": low, "lt": high}}
    with_customer = {**created, "expand": list(EXPANSIONS["payment_intents"])}
    for intents in listed_pages(client, "/v1/payment_intents", with_customer, "PaymentIntents"):
        found: list[_Found | _Pending | Unreadable | Paged] = []
        for intent in _of_slice(intents, low, high):
            found.extend(_pending(intent, PENDING_PAYMENT_STATUSES))
            found.extend(_guarded(intent, partial(_topup_entries, intent, lookup)))
            found.extend(of_intent(intent, lookup) if observe else ())
        yield found
    with_payment = {**created, "expand": list(EXPANSIONS["refunds"])}
    for refunds in listed_pages(client, "/v1/refunds", with_payment, "refunds"):
        found = []
        for returned in _of_slice(refunds, low, high):
            found.extend(_pending(returned, PENDING_REFUND_STATUSES))
            found.extend(_guarded(returned, partial(_refund_entries, returned, lookup)))
            moved_money = observe and refund_moved_money(returned)
            found.extend(of_refund(returned, lookup, moved_money=moved_money) if observe else ())
        yield found
    with_source = {**created, "expand": list(EXPANSIONS["balance_transactions"])}
    for moves in listed_pages(
        client, "/v1/balance_transactions", with_source, "balance transactions"
    ):
        found = []
        for moved in _of_slice(moves, low, high):
            found.extend(_guarded(moved, partial(_balance_entries, moved, client, lookup)))
            found.extend(of_transaction(moved, _credit_source(moved), lookup) if observe else ())
        yield found


def _credit_source(transaction: StripeDict) -> StripeDict | None:
    """Return a transaction's expanded source when it is a charge, refund or dispute."""
    source = transaction.get("source")
    if not isinstance(source, dict):
        return None
    kind = str(source.get("id") or "").split("_", 1)[0]
    return source if kind in ("ch", "py", "re", "pyr", "dp") else None


def _of_slice(items: list[StripeDict], low: int, high: int) -> Iterator[StripeDict]:
    """Yield the listed objects Stripe created in ``[low, high)``, the seconds the slice asked for.

    Each object belongs to the one slice its ``created`` falls in, so no entry can come from two
    slices and no slice needs to remember what the others yielded (memory stays flat however
    many objects a window holds). A server that ignores the ``created`` filter (localstripe
    does) lists an object in every slice; only its own keeps it, and one created outside the
    window is none of the run's. An object whose ``created`` is unreadable is kept, for the
    mapping to report as unreadable (it can make no entry).
    """
    for item in items:
        try:
            created = int(item["created"])
        except _POISON:
            yield item
            continue
        if low <= created < high:
            yield item


def listed(
    client: stripe.StripeClient, path: str, params: StripeDict, what: str
) -> Iterator[StripeDict]:
    """Yield every item of a Stripe list as plain data (see :func:`listed_pages`)."""
    for page in listed_pages(client, path, params, what):
        yield from page


def listed_pages(
    client: stripe.StripeClient, path: str, params: StripeDict, what: str
) -> Iterator[list[StripeDict]]:
    """Yield every page of a Stripe list as plain data, refusing stuck pages.

    Pages are read with :func:`~reconcile.stripe.client.get_json` and used as the JSON they
    are, parsed once: no ``StripeObject`` is built per item (that cost most of an extraction's
    CPU), and no ``OrderedDict`` either. A server
    answering ``has_more`` with a page that repeats an id already listed would page forever;
    that ends the listing instead.

    Raises:
        StripeUnavailable: an id came back a second time, or an empty page said ``has_more``.
        stripe.StripeError: as the SDK raises it (the caller translates it).
    """
    seen: set[str] = set()
    cursor: dict[str, str] = {}
    while True:
        page = get_json(client, path, {"limit": PAGE_LIMIT, **params, **cursor})
        items = page.get("data")
        if not isinstance(items, list):
            raise StripeUnavailable(f"Stripe answered a list of {what} without its data")
        for item in items:
            if not isinstance(item, dict):
                raise StripeUnavailable(f"Stripe listed one of its {what} as {type(item).__name__}")
            first_sight(str(item.get("id") or id(item)), seen, what)
        yield items
        if not page.get("has_more"):
            return
        if not items:
            raise stuck_page(what)
        cursor = {"starting_after": str(items[-1].get("id"))}


def _pending(stripe_object: StripeDict, statuses: frozenset[str]) -> list[_Pending]:
    """Return the pending mark of an object not final yet (none when its time is unreadable)."""
    created = stripe_object.get("created")
    if stripe_object.get("status") not in statuses or not isinstance(created, int):
        return []
    return [_Pending(created)]


def _ceil_unix(moment: datetime) -> int:
    """Return the first whole Unix second at or after ``moment`` (Stripe's ``created`` unit)."""
    return math.ceil(moment.timestamp())


def refund_moved_money(refund: StripeDict) -> bool:
    """Return whether a refund took money back from a customer.

    A succeeded refund did. So did a failed one that had a balance transaction: the money left
    and came back, and the ``refund_failure`` credit only balances if the debit counts too.
    Pending and canceled refunds are not final, so they are not drift yet.
    """
    status = refund.get("status")
    return status == "succeeded" or (status == "failed" and bool(refund.get("balance_transaction")))


def balance_movement(transaction: StripeDict) -> tuple[Source, EntryType] | None:
    """Return what a balance transaction is for Moesif, or ``None`` when it is none of ours."""
    category = transaction.get("reporting_category") or transaction.get("type")
    return _BALANCE_MOVEMENTS.get(str(category))


def movement_amount(transaction: StripeDict, source: StripeDict) -> tuple[object, str]:
    """Return ``(minor units, currency)`` of a balance movement, in the payment's currency.

    A balance transaction is in the settlement currency; when that differs from the dispute's
    or refund's own currency, the source's amount is the one the customer paid in. The sign of
    a balance transaction is its direction, so its magnitude is returned; an amount that is no
    whole number is returned as it came, for :func:`movement_problem` to refuse.
    """
    currency = str(transaction["currency"]).lower()
    source_currency = str(source.get("currency") or currency).lower()
    if source_currency != currency and source.get("amount") is not None:
        return _magnitude(source["amount"]), source_currency
    return _magnitude(transaction["amount"]), currency


def _magnitude(amount: object) -> object:
    return abs(amount) if isinstance(amount, int) and not isinstance(amount, bool) else amount


def _topup_entries(payment_intent: StripeDict, lookup: StripeLookup) -> list[_Found | Unreadable]:
    if payment_intent.get("status") != "succeeded" or not payment_intent.get("customer"):
        return []
    topup = lookup.topup(payment_intent)
    received = payment_intent.get("amount_received")
    if topup is None or received is None or received == 0:
        return []
    entry = _entry(
        topup,
        stripe_object=payment_intent,
        transaction_id=str(payment_intent["id"]),
        source=Source.TOPUP,
        entry_type=EntryType.CREDIT,
        amount=(received, payment_intent.get("currency")),
        created=int(payment_intent["created"]),
        stripe_object_id=str(payment_intent["id"]),
    )
    return [entry]


def _refund_entries(refund: StripeDict, lookup: StripeLookup) -> list[_Found | Unreadable]:
    if not refund_moved_money(refund):
        return []
    topup = lookup.topup_of(refund)
    if topup is None:
        return []
    entry = _entry(
        topup,
        stripe_object=refund,
        transaction_id=str(refund["id"]),
        source=Source.REFUND,
        entry_type=EntryType.DEBIT,
        amount=(refund.get("amount"), refund.get("currency")),
        created=int(refund["created"]),
        stripe_object_id=str(refund["id"]),
    )
    return [entry]


def _balance_entries(
    transaction: StripeDict, client: stripe.StripeClient, lookup: StripeLookup
) -> list[_Found | Unreadable]:
    movement = balance_movement(transaction)
    if movement is None:
        return []
    source = _expanded_source(transaction.get("source"), client)
    topup = lookup.topup_of(source) if source else None
    if source is None or topup is None:
        return []
    entry = _entry(
        topup,
        stripe_object=transaction,
        transaction_id=str(transaction["id"]),
        source=movement[0],
        entry_type=movement[1],
        amount=movement_amount(transaction, source),
        created=int(transaction["created"]),
        stripe_object_id=str(source["id"]),
    )
    return [entry]


def _expanded_source(source: object, client: stripe.StripeClient) -> StripeDict | None:
    """Return a balance transaction's source as an object, fetching it if it came as an id."""
    if isinstance(source, dict):
        return source
    source_id = id_of(source)
    if source_id is None:
        return None
    if source_id.startswith("dp_"):
        return client.v1.disputes.retrieve(source_id).to_dict()
    if source_id.startswith(("re_", "pyr_")):
        return client.v1.refunds.retrieve(source_id).to_dict()
    return None


def _entry(
    topup: TopUp,
    *,
    transaction_id: str,
    source: Source,
    entry_type: EntryType,
    amount: tuple[object, object],
    created: int,
    stripe_object_id: str,
    stripe_object: StripeDict,
) -> _Found | Unreadable:
    """Return the expected entry of one movement, or the movement as unreadable (contract §4)."""
    texts = {
        "the transaction id": transaction_id,
        "the object id": stripe_object_id,
        "the top-up id": topup.payment_intent_id,
        "the customer id": topup.customer_id,
        "the company id": topup.company_hint,
        "the subscription id": topup.subscription_id,
        "the unmapped reason": topup.unmapped_reason,
    }
    problem = movement_problem(amount[0], amount[1], texts)
    if problem is not None:
        return unreadable_object(
            stripe_object, problem, company_hint=topup.company_hint, customer_id=topup.customer_id
        )
    entry = ExpectedEntry(
        transaction_id=transaction_id,
        source=source,
        entry_type=entry_type,
        amount_minor=int(str(amount[0])),
        currency=str(amount[1]).lower(),
        created_at=from_unix(created),
        stripe_object_id=stripe_object_id,
        topup_id=topup.payment_intent_id,
        stripe_customer_id=topup.customer_id,
        company_id=topup.company_id,
        subscription_id=topup.subscription_id,
        unmapped_reason=topup.unmapped_reason,
    )
    return _Found(entry, topup.company_hint)
