"""The live path's side of the posting rule: read what it needs from Moesif, then ask it.

``/top-up`` and the webhook worker ask :func:`reconcile.rules.destination.destination`, the rule
the nightly run asks, with what Moesif holds now: the subscription (read through
:class:`reconcile.subscriptions.SubscriptionDirectory`, with fresh reads from Moesif) and the
ledger rows already carrying the movement's transaction id (the snapshot's copy of the ledger).
A refused webhook movement becomes an open finding at once (:func:`finding_of`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from reconcile.db.ledger import rows_carrying
from reconcile.domain.ids import finding_id
from reconcile.domain.values import ExpectedEntry
from reconcile.domain.vocab import Source
from reconcile.moesif.client import MoesifClient
from reconcile.rules.delta import correction
from reconcile.rules.destination import (
    UNCHECKED,
    Movement,
    Placed,
    Subscription,
    Verdict,
    destination,
)
from reconcile.subscriptions import SubscriptionDirectory


class Destinations:
    """Decides, for the live path, whether a movement may be posted and where."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        moesif: MoesifClient,
        clock: Callable[[], datetime],
    ) -> None:
        """Read the snapshot through ``sessions`` and Moesif through ``moesif``."""
        self._sessions = sessions
        self._moesif = moesif
        self._clock = clock

    def verdict(self, movement: Movement, kinds: Collection[Source] | None = None) -> Verdict:
        """Return the rule's verdict on ``movement`` with what Moesif holds now.

        Another process keeping the same subscription at that moment is no failure: the
        decision is taken once more, over what it kept.

        Raises:
            MoesifUnavailable: Moesif could not be read (the caller retries or answers so).
            SQLAlchemyError: the snapshot database failed.
        """
        if kinds is not None and movement.source not in kinds:
            return destination(movement, UNCHECKED, kinds=kinds)
        try:
            return self._decide(movement, kinds)
        except IntegrityError:
            return self._decide(movement, kinds)

    def _decide(self, movement: Movement, kinds: Collection[Source] | None) -> Verdict:
        directory = SubscriptionDirectory(self._moesif, self._clock, fresh_reads=True)
        with self._sessions.begin() as session:
            subscription: Subscription | None = UNCHECKED
            if movement.company_id is not None and movement.subscription_id is not None:
                known = directory.lookup(session, movement.subscription_id, movement.currency)
                subscription = (
                    None if known is None else Subscription(known.currency, known.company_id)
                )
            carried = (
                [Placed(*found) for found in rows_carrying(session, movement.transaction_id)]
                if movement.transaction_id
                else []
            )
        return destination(movement, subscription, kinds=kinds, carried_by=carried)


def movement_of(entry: ExpectedEntry) -> Movement:
    """Return an expected entry as the movement the rule takes."""
    return Movement(
        currency=entry.currency,
        company_id=entry.company_id,
        subscription_id=entry.subscription_id,
        transaction_id=entry.transaction_id,
        unmapped_reason=entry.unmapped_reason,
        source=entry.source,
    )


def finding_of(
    entry: ExpectedEntry, verdict: Verdict, origin: str
) -> tuple[str, dict[str, object]]:
    """Return the finding id and state values of a refused movement, as a run would record them.

    A ``misapplied`` finding is about the row on the wrong subscription, and sits where it does.
    """
    category = str(verdict.category)
    row = verdict.row
    values: dict[str, object] = {
        "category": category,
        "transaction_id": entry.transaction_id,
        "moesif_id": row.moesif_id if row else None,
        "company_id": row.company_id if row else entry.company_id,
        "subscription_id": row.subscription_id if row else entry.subscription_id,
        "stripe_customer_id": entry.stripe_customer_id,
        "stripe_object_id": entry.stripe_object_id,
        "entry_type": str(entry.entry_type),
        "currency": entry.currency,
        "stripe_amount_minor": entry.amount_minor,
        "moesif_amount_minor": row.amount_minor if row else None,
        "detail": f"{verdict.reason} (refused by {origin})",
    }
    values["delta_minor"] = correction(
        category, str(entry.entry_type), entry.amount_minor, row.amount_minor if row else None
    )
    key = finding_id(category, entry.transaction_id, row.moesif_id if row else None)
    return key, values
