"""Queries on ``moesif_subscriptions``: the subscription currencies read from Moesif, kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from reconcile.db.models import MoesifSubscription


@dataclass(frozen=True)
class KeptCurrency:
    """A subscription's currency as last read from Moesif (``None``: Moesif names none)."""

    currency: str | None
    fetched_at: datetime


def kept_currency(session: Session, subscription_id: str) -> KeptCurrency | None:
    """Return the kept currency of a subscription, or ``None`` when none was ever kept."""
    stored = session.get(MoesifSubscription, subscription_id)
    return None if stored is None else KeptCurrency(stored.currency, stored.fetched_at)


def kept_currencies(session: Session) -> dict[str, KeptCurrency]:
    """Return every kept currency by subscription id, in one query."""
    query = select(
        MoesifSubscription.subscription_id,
        MoesifSubscription.currency,
        MoesifSubscription.fetched_at,
    )
    return {
        subscription_id: KeptCurrency(currency, fetched_at)
        for subscription_id, currency, fetched_at in session.execute(query)
    }


def keep_currency(
    session: Session, subscription_id: str, currency: str | None, fetched_at: datetime
) -> None:
    """Keep (insert or replace) a subscription's currency as read at ``fetched_at``."""
    session.merge(
        MoesifSubscription(
            subscription_id=subscription_id, currency=currency, fetched_at=fetched_at
        )
    )
