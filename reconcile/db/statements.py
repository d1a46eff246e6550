"""Queries for a customer's statement: a company's subscriptions, movements and ledger rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from reconcile.db.models import ExpectedRow, Finding, LedgerEntry, MoesifSubscription, Posting
from reconcile.domain.vocab import PostingStatus


@dataclass(frozen=True)
class StoredRow:
    """A ledger row of the snapshot (or a confirmed posting no row shows yet), amount unsigned."""

    moesif_id: str
    transaction_id: str | None
    entry_type: str
    amount_minor: int
    currency: str | None
    created_at: datetime
    description: str | None


@dataclass(frozen=True)
class StoredMovement:
    """A Stripe movement the snapshot expects in Moesif, amount unsigned."""

    transaction_id: str
    source: str
    entry_type: str
    amount_minor: int
    currency: str
    created_at: datetime
    stripe_object_id: str


def company_subscriptions(session: Session, company_id: str) -> dict[str, str | None]:
    """Return the company's subscriptions the snapshot knows, with their currency if known.

    A subscription is known from Moesif's subscription read, a ledger row or a Stripe movement
    mapped to it; its currency is Moesif's, else its ledger rows', else its movements'.
    """
    found: dict[str, str | None] = {}
    sources = (
        select(MoesifSubscription.subscription_id, MoesifSubscription.currency).where(
            MoesifSubscription.company_id == company_id
        ),
        select(LedgerEntry.subscription_id, func.max(LedgerEntry.currency))
        .where(LedgerEntry.company_id == company_id, LedgerEntry.subscription_id.is_not(None))
        .group_by(LedgerEntry.subscription_id),
        select(ExpectedRow.subscription_id, func.max(ExpectedRow.currency))
        .where(ExpectedRow.company_id == company_id, ExpectedRow.subscription_id.is_not(None))
        .group_by(ExpectedRow.subscription_id),
    )
    for query in sources:
        for subscription_id, currency in session.execute(query):
            if found.get(str(subscription_id)) is None:
                found[str(subscription_id)] = currency.lower() if currency else None
    return found


def _signed_ledger() -> ColumnElement[int]:
    debits = LedgerEntry.entry_type.in_(("debit", "usage"))
    return case((debits, -LedgerEntry.amount_minor), else_=LedgerEntry.amount_minor)


def ledger_sum_before(session: Session, subscription_id: str, moment: datetime) -> int:
    """Return the signed sum of the subscription's ledger rows created before ``moment``.

    Credits, promotions and adjustments add, debits and usage subtract; gone rows count not.
    """
    query = select(func.sum(_signed_ledger())).where(
        LedgerEntry.subscription_id == subscription_id,
        LedgerEntry.created_at < moment,
        LedgerEntry.gone_at.is_(None),
    )
    return int(session.execute(query).scalar() or 0)


def ledger_rows_between(
    session: Session, subscription_id: str, since: datetime, until: datetime
) -> list[StoredRow]:
    """Return the subscription's ledger rows created in ``[since, until)``, gone ones left out."""
    query = (
        select(
            LedgerEntry.moesif_id,
            LedgerEntry.transaction_id,
            LedgerEntry.entry_type,
            LedgerEntry.amount_minor,
            LedgerEntry.currency,
            LedgerEntry.created_at,
            LedgerEntry.description,
        )
        .where(
            LedgerEntry.subscription_id == subscription_id,
            LedgerEntry.created_at >= since,
            LedgerEntry.created_at < until,
            LedgerEntry.gone_at.is_(None),
        )
        .order_by(LedgerEntry.created_at, LedgerEntry.moesif_id)
    )
    return [
        StoredRow(str(m), t, str(e), int(a), c, at, d)
        for m, t, e, a, c, at, d in session.execute(query)
    ]


def confirmed_postings_between(
    session: Session, subscription_id: str, since: datetime, until: datetime
) -> list[StoredRow]:
    """Return the postings Moesif confirmed for the subscription in ``[since, until)``.

    Each as a row ``posting:<transaction id>`` at its confirmation; the caller drops those a
    ledger row already shows.
    """
    moment = func.coalesce(Posting.confirmed_at, Posting.created_at)
    query = (
        select(
            Posting.transaction_id,
            Posting.entry_type,
            Posting.amount_minor,
            Posting.currency,
            moment,
            Posting.description,
        )
        .where(
            Posting.subscription_id == subscription_id,
            Posting.status == PostingStatus.CONFIRMED,
            moment >= since,
            moment < until,
        )
        .order_by(moment, Posting.transaction_id)
    )
    return [
        StoredRow(f"posting:{t}", t, str(e), int(a), c, _aware(at), d)
        for t, e, a, c, at, d in session.execute(query)
    ]


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def stripe_movements_between(
    session: Session, subscription_id: str, since: datetime, until: datetime
) -> list[StoredMovement]:
    """Return the Stripe movements mapped to the subscription created in ``[since, until)``."""
    query = (
        select(
            ExpectedRow.transaction_id,
            ExpectedRow.source,
            ExpectedRow.entry_type,
            ExpectedRow.amount_minor,
            ExpectedRow.currency,
            ExpectedRow.created_at,
            ExpectedRow.stripe_object_id,
        )
        .where(
            ExpectedRow.subscription_id == subscription_id,
            ExpectedRow.entry_type.in_(("credit", "debit")),
            ExpectedRow.created_at >= since,
            ExpectedRow.created_at < until,
        )
        .order_by(ExpectedRow.created_at, ExpectedRow.transaction_id)
    )
    return [
        StoredMovement(t, str(s), str(e), int(a), str(c).lower(), at, str(o))
        for t, s, e, a, c, at, o in session.execute(query)
    ]


def pairings(session: Session, subscription_id: str, categories: Sequence[str]) -> dict[str, str]:
    """Return, per ledger row, the Stripe ``transaction_id`` a run's finding paired it with.

    Read from the runs' findings of ``categories`` on the subscription (a row paired by amount
    is reported, not followed as an open finding); a later run's pairing wins.
    """
    query = (
        select(Finding.moesif_id, Finding.transaction_id)
        .where(
            Finding.subscription_id == subscription_id,
            Finding.category.in_(list(categories)),
            Finding.moesif_id.is_not(None),
            Finding.transaction_id.is_not(None),
        )
        .order_by(Finding.id)
    )
    return {str(moesif_id): str(tid) for moesif_id, tid in session.execute(query)}
