"""What the run paged, kept for the control totals: balance transactions and the credit's objects.

While a slice is read, each balance transaction becomes a :class:`PagedMovement` (and, when it
moves prepaid credit, a :class:`~reconcile.rules.control_totals.TransactionRef`), and each
succeeded top-up, refund of one and dispute of one a :class:`PagedObject`. After the read,
:func:`counterparts` settles what paging alone cannot tell: which balance transaction a top-up's
charge names, and whether a named one the run did not page lies outside the window (then it is
not missing) or nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import stripe

from reconcile.domain.times import Window, from_unix
from reconcile.rules.control_totals import MovedObject, PagedTransaction, TransactionRef
from reconcile.stripe.client import stripe_errors
from reconcile.stripe.mapping import StripeDict, StripeLookup, id_of

_POISON = (KeyError, TypeError, ValueError, ArithmeticError, AttributeError)


@dataclass(frozen=True)
class PagedMovement:
    """A balance transaction the run paged; ``ref`` is set when it moves prepaid credit."""

    transaction: PagedTransaction
    created: int
    ref: TransactionRef | None


@dataclass(frozen=True)
class PagedObject:
    """A succeeded top-up, refund or dispute; a top-up names its charge, not yet its movement."""

    moved: MovedObject
    charge_id: str | None = None


Paged = PagedMovement | PagedObject


def of_intent(intent: StripeDict, lookup: StripeLookup) -> list[Paged]:
    """Return a succeeded top-up PaymentIntent as an object naming its latest charge."""
    try:
        if intent.get("status") != "succeeded" or not intent.get("amount_received"):
            return []
        if not intent.get("customer") or lookup.topup(intent) is None:
            return []
        moved = MovedObject(str(intent["id"]), "top-up", ())
        return [PagedObject(moved, id_of(intent.get("latest_charge")))]
    except _POISON:
        return []


def of_refund(refund: StripeDict, lookup: StripeLookup, *, moved_money: bool) -> list[Paged]:
    """Return a refund of a top-up that moved money, naming its balance transaction.

    A failed refund's ``refund_failure`` credit is no movement of its own for this check (see
    :func:`of_transaction`): the refund's debit is the one it names.
    """
    try:
        if not moved_money or lookup.topup_of(refund) is None:
            return []
        named = id_of(refund.get("balance_transaction"))
        ids = (named,) if named else ()
        return [PagedObject(MovedObject(str(refund["id"]), "refund", ids))]
    except _POISON:
        return []


def of_transaction(
    transaction: StripeDict, source: StripeDict | None, lookup: StripeLookup
) -> list[Paged]:
    """Return a paged balance transaction, and the dispute it belongs to when it is a credit's.

    ``source`` is the transaction's source as an object, or ``None`` when it has none the run
    reads (a payout, a fee...). A transaction too malformed to sum is left out. A
    ``refund_failure`` is summed but is no counterpart: the failed refund names its debit.
    """
    try:
        paged = PagedTransaction(
            id=str(transaction["id"]),
            reporting_category=str(transaction.get("reporting_category") or transaction["type"]),
            currency=str(transaction["currency"]).lower(),
            amount=_whole(transaction["amount"]),
            fee=_whole(transaction.get("fee") or 0),
            net=_whole(transaction["net"]),
        )
        created = _whole(transaction["created"])
    except _POISON:
        return []
    found: list[Paged] = []
    ref = None
    try:
        if (
            source is not None
            and transaction.get("type") != "refund_failure"
            and lookup.topup_of(source) is not None
        ):
            ref = TransactionRef(paged.id, str(source["id"]), str(transaction.get("type")))
            if str(source["id"]).startswith("dp_"):
                named = tuple(str(id_of(one)) for one in source.get("balance_transactions") or ())
                found.append(PagedObject(MovedObject(str(source["id"]), "dispute", named)))
    except _POISON:
        ref = None
    return [PagedMovement(paged, created, ref), *found]


def _whole(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{value!r} is no whole number")
    return value


def counterparts(
    client: stripe.StripeClient, paged: Iterable[Paged], window: Window
) -> tuple[list[MovedObject], list[TransactionRef]]:
    """Return the objects and prepaid-credit transactions for ``missing_counterparts``.

    Each top-up is given the balance transaction of its charge (the paged one, else the one
    Stripe names on the charge). A prepaid charge's transaction named by no top-up read brings
    its PaymentIntent in (it was created before the window and succeeded in it). A named
    transaction the run did not page is asked for by id: one created outside ``window`` counts
    as present; one Stripe lacks, or created inside the window, stays missing.

    Raises:
        CredentialsRejected: Stripe refused the key.
        StripeUnavailable: Stripe failed after retries.
    """
    items = list(paged)
    refs = {item.ref.id: item.ref for item in items if isinstance(item, PagedMovement) and item.ref}
    objects = {item.moved.id: item for item in items if isinstance(item, PagedObject)}
    by_charge = {ref.source_id: ref.id for ref in refs.values() if ref.source_id}
    named_charges = {item.charge_id for item in objects.values() if item.charge_id}
    with stripe_errors():
        for ref in list(refs.values()):
            if ref.type == "charge" and ref.source_id and ref.source_id not in named_charges:
                found = _intent_of_charge(client, ref.source_id)
                objects.update(found)
                named_charges |= {item.charge_id for item in found.values() if item.charge_id}
        moved = [_with_charge(client, item, by_charge) for item in objects.values()]
        for one in moved:
            for named in one.balance_transaction_ids:
                if named not in refs and _outside(client, named, window):
                    refs[named] = TransactionRef(named, one.id, "outside the window")
    return moved, list(refs.values())


def _intent_of_charge(client: stripe.StripeClient, charge_id: str) -> dict[str, PagedObject]:
    charge = client.v1.charges.retrieve(charge_id).to_dict()
    intent_id = id_of(charge.get("payment_intent"))
    if intent_id is None:
        return {}
    intent = client.v1.payment_intents.retrieve(intent_id).to_dict()
    if intent.get("status") != "succeeded":
        return {}
    moved = MovedObject(intent_id, "top-up", ())
    return {intent_id: PagedObject(moved, id_of(intent.get("latest_charge")))}


def _with_charge(
    client: stripe.StripeClient, item: PagedObject, by_charge: dict[str, str]
) -> MovedObject:
    if item.moved.kind != "top-up":
        return item.moved
    named = by_charge.get(item.charge_id or "")
    if named is None and item.charge_id:
        charge = client.v1.charges.retrieve(item.charge_id).to_dict()
        named = id_of(charge.get("balance_transaction"))
    return MovedObject(item.moved.id, item.moved.kind, (named,) if named else ())


def _outside(client: stripe.StripeClient, transaction_id: str, window: Window) -> bool:
    """Return whether Stripe has the transaction, created outside ``window``."""
    try:
        found = client.v1.balance_transactions.retrieve(transaction_id).to_dict()
    except stripe.InvalidRequestError as error:
        if error.http_status == 404:
            return False
        raise
    created = found.get("created")
    if not isinstance(created, int):
        return False
    return not window.since <= from_unix(created) < window.until
