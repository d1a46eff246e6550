"""Which Stripe objects a webhook event moves money on, so they map as the nightly run maps them.

The decision is a pure function of the event: it names the objects (by id) whose ledger entries
the event may create, and which kinds of entry it stands for. Fetching those objects and mapping
them (contract section 4) is left to :func:`reconcile.stripe.extract.extract_by_ids`, the same
code the nightly run uses, so the webhook and the run agree on ids, amounts and destinations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from reconcile.domain.ids import posting_description
from reconcile.domain.values import Entry, ExpectedEntry
from reconcile.domain.vocab import Category, EntryType, Source
from reconcile.rules.destination import Outcome, Verdict
from reconcile.stripe.mapping import id_of

REFUND_EVENTS = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)
"""Events whose object is a Refund."""

HANDLED = frozenset(
    {
        "payment_intent.succeeded",
        "charge.refunded",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
        *REFUND_EVENTS,
    }
)
"""Event types ``serve`` acts on; every other type is answered and ignored."""


@dataclass(frozen=True)
class EventPlan:
    """What to fetch and map for one event.

    ``object_ids`` are ``pi_``/``re_``/``txn_`` ids mapped by id as the nightly run maps them;
    ``refunds_of_charge`` asks for every refund of a charge, ``transactions_of`` for every
    balance transaction of a source (a failed refund that does not name its
    ``failure_balance_transaction``); ``sources`` keeps only entries of these kinds (``None``:
    all). ``handled`` is false for a type ``serve`` does not act on.
    """

    handled: bool
    object_ids: tuple[str, ...] = ()
    refunds_of_charge: str | None = None
    transactions_of: str | None = None
    sources: frozenset[Source] | None = None
    note: str = ""
    stripe_account: str | None = None
    """A Connect event's ``account``: the objects are that connected account's (section 12)."""


def plan_event(event: Mapping[str, Any]) -> EventPlan:
    """Return what an event asks for; an event that moves no money yet plans nothing.

    A Connect event (``account`` on the event) plans the same, within that account.
    """
    plan = _plan(event)
    account = event.get("account")
    if isinstance(account, str) and account.startswith("acct_"):
        return replace(plan, stripe_account=account)
    return plan


def _plan(event: Mapping[str, Any]) -> EventPlan:
    event_type = str(event.get("type") or "")
    if event_type not in HANDLED:
        return EventPlan(handled=False, note=f"event type {event_type!r} is not handled")
    obj = _object(event)
    if event_type == "payment_intent.succeeded":
        return _ids(id_of(obj.get("id")), sources=frozenset({Source.TOPUP}))
    if event_type == "charge.refunded":
        charge = id_of(obj.get("id"))
        return EventPlan(handled=True, refunds_of_charge=charge, sources=frozenset({Source.REFUND}))
    if event_type in REFUND_EVENTS:
        return _refund_plan(obj)
    withdrawn = event_type == "charge.dispute.funds_withdrawn"
    source = Source.DISPUTE if withdrawn else Source.DISPUTE_REVERSAL
    return EventPlan(
        handled=True,
        object_ids=tuple(_dispute_transactions(obj.get("balance_transactions"), source)),
        sources=frozenset({source}),
    )


def _refund_plan(refund: Mapping[str, Any]) -> EventPlan:
    """A succeeded refund is a debit; a failed one also returns its money (``refund_failure``)."""
    status = refund.get("status")
    refund_id = id_of(refund.get("id"))
    if status == "succeeded":
        return _ids(refund_id, sources=frozenset({Source.REFUND}))
    if status == "failed":
        failure = id_of(refund.get("failure_balance_transaction"))
        return EventPlan(
            handled=True,
            object_ids=tuple(found for found in (refund_id, failure) if found),
            transactions_of=None if failure else refund_id,
            sources=frozenset({Source.REFUND, Source.REFUND_FAILURE}),
        )
    return EventPlan(handled=True, note=f"refund {refund_id} is {status}, not final yet")


def _dispute_transactions(transactions: object, source: Source) -> list[str]:
    """Return the ids of a dispute's balance transactions that may be ``source`` movements.

    Stripe expands them in an event; a transaction given only by id is kept for the mapping to
    decide.
    """
    found: list[str] = []
    for item in transactions if isinstance(transactions, Sequence) else ():
        transaction_id = id_of(item)
        if transaction_id is None:
            continue
        if isinstance(item, Mapping):
            category = item.get("reporting_category") or item.get("type")
            if category not in (None, str(source)):
                continue
        found.append(transaction_id)
    return found


def _ids(object_id: str | None, *, sources: frozenset[Source]) -> EventPlan:
    return EventPlan(handled=True, object_ids=(object_id,) if object_id else (), sources=sources)


def _object(event: Mapping[str, Any]) -> Mapping[str, Any]:
    data = event.get("data")
    found = data.get("object") if isinstance(data, Mapping) else None
    return found if isinstance(found, Mapping) else {}


@dataclass(frozen=True)
class EventOrders:
    """The orders an event's entries make, and the entries the posting rule refused."""

    orders: tuple[Entry, ...]
    refused: tuple[tuple[ExpectedEntry, Verdict], ...]

    @property
    def unmapped(self) -> tuple[str, ...]:
        """``transaction_id: reason`` of each refused entry that is an unmapped customer."""
        return tuple(
            f"{entry.transaction_id}: {verdict.reason}"
            for entry, verdict in self.refused
            if verdict.category == Category.UNMAPPED_CUSTOMER
        )


def orders_of(decided: Sequence[tuple[ExpectedEntry, Verdict]], origin: str) -> EventOrders:
    """Return the orders of the entries the rule lets post, and those it refused.

    ``decided`` pairs each entry with :func:`reconcile.rules.destination.destination`'s verdict
    on it; an entry the rule leaves (another kind than the event stands for) is neither.
    """
    orders: list[Entry] = []
    refused: list[tuple[ExpectedEntry, Verdict]] = []
    for entry, verdict in decided:
        if verdict.outcome is Outcome.REFUSE:
            refused.append((entry, verdict))
        if not verdict.posts or entry.company_id is None or entry.subscription_id is None:
            continue
        orders.append(
            Entry(
                transaction_id=entry.transaction_id,
                company_id=entry.company_id,
                subscription_id=entry.subscription_id,
                entry_type="debit" if entry.entry_type == EntryType.DEBIT else "credit",
                amount_minor=entry.amount_minor,
                currency=entry.currency,
                description=posting_description(
                    str(entry.entry_type), entry.transaction_id, entry.stripe_object_id, origin
                ),
                occurred_at=entry.created_at,
            )
        )
    return EventOrders(tuple(orders), tuple(refused))
