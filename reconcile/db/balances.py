"""Queries for the balance check: Stripe's and Moesif's nets per subscription, summed by SQL."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, case, exists, func, literal, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from reconcile.db.models import ExpectedRow, LedgerEntry, MoesifSubscription, Posting
from reconcile.domain.ids import OWN_POSTING_HEAD, OWN_POSTING_MIDDLE
from reconcile.domain.vocab import PostingStatus

Key = tuple[str, str, str]
"""(company id, subscription id, currency)."""


def _signed(
    entry_type: InstrumentedAttribute[str], amount: InstrumentedAttribute[int]
) -> ColumnElement[int]:
    return case((entry_type == "debit", -amount), else_=amount)


def stripe_nets(session: Session, companies: Sequence[str] = ()) -> dict[Key, int]:
    """Return credits minus debits of every Stripe movement the snapshot holds, per key."""
    net = func.sum(_signed(ExpectedRow.entry_type, ExpectedRow.amount_minor))
    query = (
        select(ExpectedRow.company_id, ExpectedRow.subscription_id, ExpectedRow.currency, net)
        .where(
            ExpectedRow.company_id.is_not(None),
            ExpectedRow.subscription_id.is_not(None),
            ExpectedRow.entry_type.in_(("credit", "debit")),
        )
        .group_by(ExpectedRow.company_id, ExpectedRow.subscription_id, ExpectedRow.currency)
    )
    if companies:
        query = query.where(ExpectedRow.company_id.in_(companies))
    return {(str(c), str(s), cur.lower()): int(n or 0) for c, s, cur, n in session.execute(query)}


def moesif_nets(session: Session, companies: Sequence[str] = ()) -> dict[Key, int]:
    """Return credits minus debits of the ledger snapshot per key (promotions etc. left out).

    A row that names no currency takes its subscription's, as the snapshot last read it.
    """
    currency = func.lower(func.coalesce(LedgerEntry.currency, MoesifSubscription.currency, ""))
    net = func.sum(_signed(LedgerEntry.entry_type, LedgerEntry.amount_minor))
    query = (
        select(LedgerEntry.company_id, LedgerEntry.subscription_id, currency, net)
        .outerjoin(
            MoesifSubscription, MoesifSubscription.subscription_id == LedgerEntry.subscription_id
        )
        .where(
            LedgerEntry.company_id.is_not(None),
            LedgerEntry.subscription_id.is_not(None),
            LedgerEntry.entry_type.in_(("credit", "debit")),
            LedgerEntry.gone_at.is_(None),
        )
        .group_by(LedgerEntry.company_id, LedgerEntry.subscription_id, currency)
    )
    if companies:
        query = query.where(LedgerEntry.company_id.in_(companies))
    return {(str(c), str(s), str(cur)): int(n or 0) for c, s, cur, n in session.execute(query)}


def confirmed_unseen_nets(session: Session, companies: Sequence[str] = ()) -> dict[Key, int]:
    """Return the net of postings Moesif confirmed that no ledger row shows yet, per key.

    A ledger row shows a posting by its transaction id, or, when reports leave ids out, by the
    description the job wrote (``reconcile: credit pi_… for Stripe …``).
    """
    own = (
        literal(OWN_POSTING_HEAD) + Posting.entry_type + literal(" ") + Posting.transaction_id
    ) + literal(f"{OWN_POSTING_MIDDLE}%")  # posting_description, from columns
    seen = exists().where(
        or_(
            LedgerEntry.transaction_id == Posting.transaction_id,
            and_(LedgerEntry.transaction_id.is_(None), LedgerEntry.description.like(own)),
        )
    )
    net = func.sum(_signed(Posting.entry_type, Posting.amount_minor))
    query = (
        select(Posting.company_id, Posting.subscription_id, Posting.currency, net)
        .where(Posting.status == PostingStatus.CONFIRMED, ~seen)
        .group_by(Posting.company_id, Posting.subscription_id, Posting.currency)
    )
    if companies:
        query = query.where(Posting.company_id.in_(companies))
    return {(c, s, cur.lower()): int(n or 0) for c, s, cur, n in session.execute(query)}
