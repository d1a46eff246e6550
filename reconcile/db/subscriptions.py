"""Queries on ``moesif_subscriptions``: subscriptions' currencies, companies and balances, kept."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import false, select
from sqlalchemy.orm import Session

from reconcile.db.frames import LISTED, among, carrying, raw, read
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


def kept_currencies(
    session: Session, subscription_ids: Collection[str] | None = None
) -> dict[str, KeptCurrency]:
    """Return the kept currencies by subscription id, in one query: every one, or these ones.

    See :func:`kept_frame`.
    """
    frame = kept_frame(session, subscription_ids)
    kept = frame.astype(object).where(frame.notna(), None)
    times = frame["fetched_at"].dt.to_pydatetime().tolist()
    return {
        str(subscription_id): KeptCurrency(currency, fetched_at, company_id)
        for subscription_id, currency, fetched_at, company_id in zip(
            kept["subscription_id"].tolist(),
            kept["currency"].tolist(),
            times,
            kept["company_id"].tolist(),
            strict=True,
        )
    }


def kept_frame(session: Session, subscription_ids: Collection[str] | None = None) -> pd.DataFrame:
    """Return the kept rows as a frame, every one or these ones.

    Columns ``subscription_id``, ``currency``, ``fetched_at`` (aware UTC) and ``company_id``,
    missing where Moesif names none.

    A few of ``subscription_ids`` are read by their key, so the work follows the subscriptions
    asked about, not the table; more than :data:`reconcile.db.frames.LISTED` are kept from a
    read of every row (one pass, no table of ids to write). In bulk
    (:func:`reconcile.db.frames.read`), no object per cell.
    """
    query = select(
        MoesifSubscription.subscription_id,
        MoesifSubscription.currency,
        raw(MoesifSubscription.fetched_at),
        MoesifSubscription.company_id,
    )
    few = subscription_ids is not None and len(subscription_ids) <= LISTED
    if subscription_ids is not None and few:
        if not subscription_ids:
            return read(session, query.where(false()), _KEPT, times=["fetched_at"])
        query = query.where(among(session, MoesifSubscription.subscription_id, subscription_ids))
    frame = read(session, query, _KEPT, times=["fetched_at"])
    if subscription_ids is not None and not few:
        frame = frame[carrying(frame["subscription_id"], subscription_ids)]
    return frame


_KEPT = ["subscription_id", "currency", "fetched_at", "company_id"]


def keep_currency(
    session: Session,
    subscription_id: str,
    currency: str | None,
    fetched_at: datetime,
    company_id: str | None = None,
    available_balance_minor: int | None = None,
    balance: tuple[str, int | None] | None = None,
) -> None:
    """Keep (insert or replace) a subscription's currency and company as read at ``fetched_at``.

    With ``available_balance_minor`` (minor units of ``currency``), its available balance as
    read then is kept too; with ``balance``, the ``current_balance`` Moesif reported (exact
    decimal text) and its ``sequence_id``. Without them, what was kept before stays as it was.
    """
    kept = MoesifSubscription(
        subscription_id=subscription_id,
        currency=currency,
        company_id=company_id,
        fetched_at=fetched_at,
    )
    if balance is not None:
        kept.current_balance, kept.balance_sequence_id = balance
    if available_balance_minor is not None:
        kept.available_balance_minor = available_balance_minor
        kept.balance_read_at = fetched_at
    session.merge(kept)


def kept_balances(session: Session, subscription_ids: Collection[str]) -> dict[str, int]:
    """Return the available balance last read of each of these subscriptions that has one.

    Minor units of the subscription's kept currency, by subscription id.
    """
    found: dict[str, int] = {}
    wanted = sorted(set(subscription_ids))
    for start in range(0, len(wanted), 500):
        query = select(
            MoesifSubscription.subscription_id, MoesifSubscription.available_balance_minor
        ).where(
            MoesifSubscription.subscription_id.in_(wanted[start : start + 500]),
            MoesifSubscription.available_balance_minor.is_not(None),
        )
        found.update(
            {str(sid): int(minor) for sid, minor in session.execute(query) if minor is not None}
        )
    return found
