"""Queries on ``moesif_subscriptions``: subscriptions' currencies and companies, kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from reconcile.db.models import MoesifSubscription


@dataclass(frozen=True)
class KeptCurrency:
    """A subscription's currency as last read from Moesif (``None``: Moesif names none).

    ``company_id`` is ``None`` when Moesif names none or it was kept before companies were.
    """

    currency: str | None
    fetched_at: datetime
    company_id: str | None = None


def kept_currency(session: Session, subscription_id: str) -> KeptCurrency | None:
    """Return the kept currency of a subscription, or ``None`` when none was ever kept."""
    stored = session.get(MoesifSubscription, subscription_id)
    if stored is None:
        return None
    return KeptCurrency(stored.currency, stored.fetched_at, stored.company_id)


def kept_currencies(session: Session) -> dict[str, KeptCurrency]:
    """Return every kept currency by subscription id, in one query."""
    query = select(
        MoesifSubscription.subscription_id,
        MoesifSubscription.currency,
        MoesifSubscription.fetched_at,
        MoesifSubscription.company_id,
    )
    return {
        subscription_id: KeptCurrency(currency, fetched_at, company_id)
        for subscription_id, currency, fetched_at, company_id in session.execute(query)
    }


def keep_currency(
    session: Session,
    subscription_id: str,
    currency: str | None,
    fetched_at: datetime,
    company_id: str | None = None,
    balance: tuple[str, int | None] | None = None,
) -> None:
    """Keep (insert or replace) a subscription's currency and company as read at ``fetched_at``.

    ``balance`` is the ``current_balance`` Moesif reported, as exact decimal text, with its
    ``sequence_id``; ``None`` keeps none.
    """
    current, sequence_id = balance if balance is not None else (None, None)
    session.merge(
        MoesifSubscription(
            subscription_id=subscription_id,
            currency=currency,
            company_id=company_id,
            fetched_at=fetched_at,
            current_balance=current,
            balance_sequence_id=sequence_id,
        )
    )
