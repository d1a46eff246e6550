"""Whether a movement may be posted, and on which company and subscription: one rule, every caller.

The nightly run, the webhook worker and ``/top-up`` all ask :func:`destination` (contract
sections 6 and 9a). It takes what the caller knows as plain values (the movement as mapped, what
Moesif says of the subscription, where rows carrying its transaction id sit) and answers with a
:class:`Verdict`: post it there, leave it (not a movement this caller handles), or refuse it with
the category the finding gets and why. The checks run in this order, the first failing one wins:
the kind of movement, the mapping, the subscription exists in Moesif, it is the company's, it
holds the movement's currency, no row carries the movement on another company or subscription.
A row carrying it on its own company and subscription means Moesif holds it already: it is
:attr:`Outcome.HELD`, never posted again (the nightly run matches such a row before it asks; the
live path asks with every row the snapshot has seen carry the transaction id).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from reconcile.domain.vocab import Category, Source


@dataclass(frozen=True)
class Movement:
    """A Stripe money movement as mapped (section 4); company or subscription ``None``: unmapped.

    ``transaction_id`` is ``None`` only for a top-up not yet charged.
    """

    currency: str
    company_id: str | None
    subscription_id: str | None
    transaction_id: str | None = None
    unmapped_reason: str | None = None
    source: Source | None = None
    """Which kind of movement it is; ``None``: not said (only a caller with ``kinds`` needs it)."""


@dataclass(frozen=True)
class Subscription:
    """What Moesif holds for a subscription; ``None`` fields are not known, so not checked."""

    currency: str | None = None
    company_id: str | None = None


UNCHECKED = Subscription()
"""A subscription nobody looked up: it is taken to exist and nothing of it is checked."""


@dataclass(frozen=True)
class Placed:
    """A ledger row that carries a movement's transaction id, and where it sits."""

    moesif_id: str
    company_id: str | None
    subscription_id: str | None
    amount_minor: int | None = None


class Outcome(StrEnum):
    """What may become of a movement."""

    POST = "post"
    """Post it on the movement's company and subscription."""
    LEAVE = "leave"
    """Not a movement this caller handles (another kind): nothing posted, nothing found."""
    REFUSE = "refuse"
    """Never post it automatically: it is a finding of :attr:`Verdict.category`."""
    HELD = "held"
    """Moesif holds it already, on its company and subscription: nothing to post, no finding."""


@dataclass(frozen=True)
class Verdict:
    """The decision about one movement.

    ``category`` and ``reason`` are set when it is refused; ``row`` names the ledger row on
    another company or subscription when that is why.
    """

    outcome: Outcome
    category: Category | None = None
    reason: str = ""
    row: Placed | None = None

    @property
    def posts(self) -> bool:
        """Whether the movement may be posted."""
        return self.outcome is Outcome.POST


POST = Verdict(Outcome.POST)
LEAVE = Verdict(Outcome.LEAVE)
HELD = Verdict(Outcome.HELD)
NO_SINGLE = "no single Moesif company/subscription"


def destination(
    movement: Movement,
    subscription: Subscription | None,
    *,
    kinds: Collection[Source] | None = None,
    carried_by: Sequence[Placed] = (),
) -> Verdict:
    """Return whether ``movement`` may be posted on its company and subscription.

    Args:
        movement: the movement as mapped.
        subscription: what Moesif holds for the movement's subscription; ``None`` when Moesif
            has no such subscription; :data:`UNCHECKED` when it was not looked up.
        kinds: the kinds of movement the caller posts (``None``: every kind).
        carried_by: ledger rows carrying the movement's transaction id, wherever they sit; one
            on the movement's own company and subscription (and none elsewhere) makes it held.
    """
    if kinds is not None and movement.source not in kinds:
        return LEAVE
    if movement.company_id is None or movement.subscription_id is None:
        return _refuse(Category.UNMAPPED_CUSTOMER, movement.unmapped_reason or NO_SINGLE)
    if subscription is None:
        return _refuse(
            Category.UNMAPPED_CUSTOMER,
            f"subscription {movement.subscription_id} not found in Moesif",
        )
    owner = subscription.company_id
    if owner is not None and owner != movement.company_id:
        return _refuse(
            Category.UNMAPPED_CUSTOMER,
            f"subscription {movement.subscription_id} belongs to company {owner}, "
            f"not to company {movement.company_id}",
        )
    theirs = subscription.currency
    if theirs is not None and theirs.lower() != movement.currency.lower():
        return _refuse(
            Category.CURRENCY_MISMATCH,
            f"payment in {movement.currency.upper()}, subscription {movement.subscription_id} "
            f"in {theirs.upper()}; not posted",
        )
    return placed(movement, carried_by)


def placed(movement: Movement, carried_by: Sequence[Placed]) -> Verdict:
    """Return where the rows carrying a mapped movement's transaction id leave it.

    A row on another company or subscription refuses it as ``misapplied``; a row on its own
    company and subscription (and none elsewhere) means Moesif holds it; none: post it. The
    posting engine asks this alone, with what Moesif returns now, before a posting's first send.
    """
    for row in carried_by:
        if (row.company_id, row.subscription_id) != (movement.company_id, movement.subscription_id):
            return Verdict(Outcome.REFUSE, Category.MISAPPLIED, _misplaced(movement, row), row)
    return HELD if carried_by else POST


def account(company: str | None, subscription: str | None) -> str:
    """Name a Moesif company and subscription, saying when one is absent."""
    return f"company {company or '(none)'} / subscription {subscription or '(none)'}"


def _misplaced(movement: Movement, row: Placed) -> str:
    where = account(row.company_id, row.subscription_id)
    belongs = account(movement.company_id, movement.subscription_id)
    return (
        f"ledger row {row.moesif_id} carries {movement.transaction_id} on {where}; "
        f"it belongs on {belongs}; nothing posted automatically"
    )


def _refuse(category: Category, reason: str) -> Verdict:
    return Verdict(Outcome.REFUSE, category, reason)
