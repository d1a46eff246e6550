"""Queries for the balance check: the nets per subscription, each latest balance, runs' windows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, exists, func, literal, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from reconcile.db.models import ExpectedRow, LedgerEntry, MoesifSubscription, Posting, Run
from reconcile.domain.ids import OWN_POSTING_HEAD, OWN_POSTING_MIDDLE
from reconcile.domain.vocab import PostingStatus, RunStatus

STREAM_ROWS = 1000
"""Rows fetched from the database at a time."""

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


@dataclass(frozen=True)
class LatestBalance:
    """A subscription's balance after its latest billing-report row, in minor units.

    ``currency`` is the row's, or the subscription's as last read when the row names none.
    """

    subscription_id: str
    currency: str | None
    created_at: datetime
    sequence_id: int
    current_minor: int
    pending_minor: int
    available_minor: int


def latest_balances(session: Session, companies: Sequence[str] = ()) -> dict[str, LatestBalance]:
    """Return each subscription's balance after its row with the highest ``sequence_id``.

    Only rows Moesif still returns and that carry a balance count. One row per subscription is
    held; the database finds them (``GROUP BY`` and a join), streamed a few at a time.
    """
    carries = (
        LedgerEntry.subscription_id.is_not(None),
        LedgerEntry.gone_at.is_(None),
        LedgerEntry.sequence_id.is_not(None),
        LedgerEntry.ending_current_minor.is_not(None),
    )
    top = (
        select(
            LedgerEntry.subscription_id.label("subscription_id"),
            func.max(LedgerEntry.sequence_id).label("sequence_id"),
        )
        .where(*carries)
        .group_by(LedgerEntry.subscription_id)
    )
    if companies:
        top = top.where(LedgerEntry.company_id.in_(companies))
    newest = top.subquery()
    query = (
        select(
            LedgerEntry.subscription_id,
            func.lower(func.coalesce(LedgerEntry.currency, MoesifSubscription.currency)),
            LedgerEntry.created_at,
            LedgerEntry.sequence_id,
            LedgerEntry.ending_current_minor,
            LedgerEntry.ending_pending_minor,
            LedgerEntry.ending_available_minor,
        )
        .join(
            newest,
            and_(
                LedgerEntry.subscription_id == newest.c.subscription_id,
                LedgerEntry.sequence_id == newest.c.sequence_id,
            ),
        )
        .outerjoin(
            MoesifSubscription, MoesifSubscription.subscription_id == LedgerEntry.subscription_id
        )
        .where(*carries)
        .execution_options(yield_per=STREAM_ROWS)
    )
    found: dict[str, LatestBalance] = {}
    for subscription_id, currency, at, sequence_id, current, pending, available in session.execute(
        query
    ):
        row = LatestBalance(
            subscription_id=str(subscription_id),
            currency=None if currency is None else str(currency),
            created_at=at,
            sequence_id=int(sequence_id),
            current_minor=int(current),
            pending_minor=0 if pending is None else int(pending),
            available_minor=int(current) + (pending or 0) if available is None else int(available),
        )
        kept = found.get(row.subscription_id)
        if kept is None or row.created_at > kept.created_at:  # one sequence id, twice: the newer
            found[row.subscription_id] = row
    return found


def read_windows(session: Session) -> Iterator[tuple[datetime, tuple[str, ...] | None]]:
    """Yield ``(since, companies)`` of every run that read Moesif in full and concluded.

    ``companies`` is ``None`` for a run over every company. Newest windows first.
    """
    query = (
        select(Run.since, Run.companies)
        .where(Run.status.in_((RunStatus.SUCCEEDED, RunStatus.GUARDRAIL)))
        .order_by(Run.since.desc())
        .execution_options(yield_per=STREAM_ROWS)
    )
    for since, companies in session.execute(query):
        yield since, tuple(companies.split(",")) if companies else None
