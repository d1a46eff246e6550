"""Queries for the running-balance check: the snapshot's rows of a subscription, chained in SQL."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from reconcile.db.frames import read, within
from reconcile.db.models import LedgerEntry, MoesifSubscription
from reconcile.rules.balance_chain import Balance, BalanceRow

STREAM_ROWS = 1000
"""Rows fetched from the database at a time while streaming the chains."""


@dataclass(frozen=True)
class Chain:
    """One subscription's rows in chain order, with the company of its last row.

    ``read_at`` is when the newest of the rows was last read from Moesif.
    """

    subscription_id: str
    company_id: str | None
    rows: tuple[BalanceRow, ...]
    read_at: datetime


@dataclass(frozen=True)
class ReportedBalance:
    """A subscription's ``current_balance`` as last read from Moesif, exactly as sent."""

    current_balance: str
    sequence_id: int | None
    currency: str | None
    read_at: datetime


def touched_subscriptions(
    session: Session, since: datetime, until: datetime, companies: Collection[str]
) -> list[str]:
    """Return the subscriptions to check (of ``companies``, when named).

    Those with a row created in ``[since, until)``, and those whose balance was read from
    Moesif since ``since`` (by a run, ``serve`` or ``balances``): a fresh reported balance is
    worth comparing even when no row is new.
    """
    rows = _touched(session, since, until, companies)
    balances = select(MoesifSubscription.subscription_id).where(
        MoesifSubscription.fetched_at >= since,
        MoesifSubscription.current_balance.is_not(None),
    )
    if companies:
        balances = balances.where(MoesifSubscription.company_id.in_(list(companies)))
    # the window's rows read as one column (no object per row), their distinct ids kept
    touched = read(session, rows, ["subscription_id"])["subscription_id"]
    found = {str(each) for each in touched.dropna().unique().tolist()}
    found |= {str(each) for each in session.scalars(balances)}
    return sorted(found)


def chained_subscriptions(session: Session, touched: Collection[str]) -> list[str]:
    """Return the ``touched`` subscriptions with a row that can take part in a chain.

    A row takes part when it has a sequence id and both balances (see
    :func:`reconcile.rules.balance_chain.balance_breaks`); a subscription without one has no
    break to find, so its rows need not be read. One pass over the rows Moesif still returns.
    """
    linked = (
        select(LedgerEntry.subscription_id)
        .where(
            LedgerEntry.subscription_id.is_not(None),
            LedgerEntry.gone_at.is_(None),
            LedgerEntry.sequence_id.is_not(None),
            LedgerEntry.beginning_current_minor.is_not(None),
            LedgerEntry.ending_current_minor.is_not(None),
        )
        .distinct()
    )
    wanted = set(touched)
    return sorted(str(found) for found in session.scalars(linked) if found in wanted)


def _touched(
    session: Session, since: datetime, until: datetime, companies: Collection[str]
) -> Select[Any]:
    query = select(LedgerEntry.subscription_id).where(
        within(session, LedgerEntry.created_at, since, until),
        LedgerEntry.subscription_id.is_not(None),
        LedgerEntry.gone_at.is_(None),
    )
    if companies:
        query = query.where(LedgerEntry.company_id.in_(list(companies)))
    return query


def chains(session: Session, subscription_ids: Collection[str]) -> Iterator[Chain]:
    """Yield each subscription's rows Moesif still returns, ordered in SQL by ``sequence_id``.

    Rows stream from the database a few at a time; only one subscription's rows are held at
    once. Rows without a sequence id come last, in time order (the rule skips them).
    """
    wanted = sorted(set(subscription_ids))
    if not wanted:
        return
    for start in range(0, len(wanted), STREAM_ROWS):
        chunk = wanted[start : start + STREAM_ROWS]
        query = (
            select(
                LedgerEntry.subscription_id,
                LedgerEntry.company_id,
                LedgerEntry.moesif_id,
                LedgerEntry.sequence_id,
                LedgerEntry.created_at,
                LedgerEntry.currency,
                LedgerEntry.beginning_current_minor,
                LedgerEntry.beginning_pending_minor,
                LedgerEntry.beginning_available_minor,
                LedgerEntry.ending_current_minor,
                LedgerEntry.ending_pending_minor,
                LedgerEntry.ending_available_minor,
                LedgerEntry.balance_changes,
                LedgerEntry.last_seen_at,
            )
            .where(LedgerEntry.subscription_id.in_(chunk), LedgerEntry.gone_at.is_(None))
            .order_by(
                LedgerEntry.subscription_id,
                LedgerEntry.sequence_id.is_(None),
                LedgerEntry.sequence_id,
                LedgerEntry.created_at,
                LedgerEntry.moesif_id,
            )
            .execution_options(yield_per=STREAM_ROWS)
        )
        for subscription_id, group in groupby(session.execute(query), key=lambda row: row[0]):
            found = list(group)
            rows = tuple(_balance_row(row) for row in found)
            yield Chain(str(subscription_id), found[-1][1], rows, max(row[13] for row in found))


def reported_balances(
    session: Session, subscription_ids: Collection[str]
) -> dict[str, ReportedBalance]:
    """Return the balances Moesif reported for these subscriptions, where one was kept."""
    found: dict[str, ReportedBalance] = {}
    wanted = sorted(set(subscription_ids))
    for start in range(0, len(wanted), STREAM_ROWS):
        query = select(
            MoesifSubscription.subscription_id,
            MoesifSubscription.current_balance,
            MoesifSubscription.balance_sequence_id,
            MoesifSubscription.currency,
            MoesifSubscription.fetched_at,
        ).where(
            MoesifSubscription.subscription_id.in_(wanted[start : start + STREAM_ROWS]),
            MoesifSubscription.current_balance.is_not(None),
        )
        for subscription_id, current, sequence_id, currency, at in session.execute(query):
            found[str(subscription_id)] = ReportedBalance(str(current), sequence_id, currency, at)
    return found


def _balance_row(row: Sequence[Any]) -> BalanceRow:
    cells = tuple(row)
    moesif_id, sequence_id, created_at, currency = cells[2:6]
    figures, changes = list(cells[6:12]), cells[12]
    return BalanceRow(
        moesif_id=str(moesif_id),
        sequence_id=None if sequence_id is None else int(sequence_id),
        created_at=created_at,
        currency=str(currency or ""),
        beginning=_balance(figures[0:3]),
        ending=_balance(figures[3:6]),
        changes=_changes(changes),
    )


def _balance(figures: list[Any]) -> Balance | None:
    current, pending, available = figures
    if current is None:
        return None
    return Balance(
        int(current),
        0 if pending is None else int(pending),
        int(current) if available is None else int(available),
    )


def _changes(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    return tuple(int(part) for part in text.split(","))
