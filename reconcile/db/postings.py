"""Queries on the postings table: the record that makes every posting exactly-once."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reconcile.db.models import LedgerEntry, Posting
from reconcile.domain.vocab import PostingStatus
from reconcile.rules.miss_rate import TOP_UP_PREFIX


def record_intent(session: Session, values: dict[str, Any]) -> bool:
    """Insert a posting's intent unless its transaction id is recorded; return whether it was new.

    Safe under concurrency: when two callers record the same id at once, the unique constraint
    decides and the loser inserts nothing (no error).
    """
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(Posting)
        .values(values)
        .on_conflict_do_nothing(index_elements=[Posting.transaction_id])
        .returning(Posting.id)
    )
    return session.execute(statement).first() is not None


def refresh(session: Session, transaction_id: str, values: dict[str, Any], now: datetime) -> None:
    """Replace what a posting will send (place, amount, description); only for a failed one."""
    session.execute(
        update(Posting)
        .where(Posting.transaction_id == transaction_id)
        .values(**values, updated_at=now)
    )


def withdraw(session: Session, transaction_id: str) -> None:
    """Forget the intent of a posting never sent (none counted): Moesif held it already."""
    session.execute(
        delete(Posting).where(
            Posting.transaction_id == transaction_id,
            Posting.status == PostingStatus.INTENT,
            Posting.attempts == 0,
        )
    )


def find(session: Session, transaction_id: str) -> Posting | None:
    """Return the posting of a transaction id, if one was ever recorded."""
    return session.scalars(select(Posting).where(Posting.transaction_id == transaction_id)).first()


def confirmed(session: Session, transaction_ids: Collection[str]) -> dict[str, Posting]:
    """Return the confirmed postings among ``transaction_ids``, by transaction id."""
    found: dict[str, Posting] = {}
    ids = list(transaction_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = session.scalars(
            select(Posting).where(
                Posting.transaction_id.in_(chunk), Posting.status == PostingStatus.CONFIRMED
            )
        )
        found.update({row.transaction_id: row for row in rows})
    return found


def unresolved(session: Session) -> list[Posting]:
    """Return postings whose outcome is not known to be applied."""
    return list(
        session.scalars(
            select(Posting)
            .where(Posting.status != PostingStatus.CONFIRMED)
            .order_by(Posting.created_at)
        )
    )


def in_ledger_snapshot(session: Session, transaction_id: str) -> bool:
    """Return whether the ledger snapshot already holds a row with this transaction id."""
    query = select(LedgerEntry.id).where(LedgerEntry.transaction_id == transaction_id).limit(1)
    return session.scalars(query).first() is not None


def settle_from_snapshot(session: Session, now: datetime) -> list[str]:
    """Confirm unfinished postings whose row the ledger snapshot now holds; return their ids."""
    settled = [
        posting.transaction_id
        for posting in unresolved(session)
        if in_ledger_snapshot(session, posting.transaction_id)
    ]
    for transaction_id in settled:
        set_status(session, transaction_id, PostingStatus.CONFIRMED, now)
    return settled


def confirmed_alike(session: Session, posting: Posting, since: datetime) -> int:
    """Count other confirmed postings since ``since`` of the same place, type and amount."""
    query = select(func.count()).where(
        Posting.status == PostingStatus.CONFIRMED,
        Posting.transaction_id != posting.transaction_id,
        Posting.company_id == posting.company_id,
        Posting.subscription_id == posting.subscription_id,
        Posting.entry_type == posting.entry_type,
        Posting.amount_minor == posting.amount_minor,
        Posting.created_at >= since,
    )
    return int(session.scalar(query) or 0)


def set_status(
    session: Session,
    transaction_id: str,
    status: PostingStatus,
    now: datetime,
    error: str | None = None,
) -> None:
    """Record the outcome of a posting."""
    values: dict[str, object] = {"status": status, "updated_at": now, "last_error": error}
    if status is PostingStatus.CONFIRMED:
        values["confirmed_at"] = now
    session.execute(
        update(Posting).where(Posting.transaction_id == transaction_id).values(**values)
    )


def count_attempt(session: Session, transaction_id: str, now: datetime) -> None:
    """Count one more send of a posting, before it is sent."""
    session.execute(
        update(Posting)
        .where(Posting.transaction_id == transaction_id)
        .values(attempts=Posting.attempts + 1, updated_at=now)
    )


def confirmed_of_run(session: Session, run_id: str) -> list[Posting]:
    """Return the postings a run made that Moesif confirmed, in the order they were recorded."""
    query = (
        select(Posting)
        .where(Posting.run_id == run_id, Posting.status == PostingStatus.CONFIRMED)
        .order_by(Posting.id)
    )
    return list(session.scalars(query))


def top_up_credits(session: Session, since: datetime) -> Iterator[tuple[datetime, str]]:
    """Yield ``(created_at, origin)`` of the confirmed top-up credits posted since ``since``.

    Streamed from the database a thousand at a time, oldest first.
    """
    query = (
        select(Posting.created_at, Posting.origin)
        .where(
            Posting.entry_type == "credit",
            Posting.transaction_id.startswith(TOP_UP_PREFIX, autoescape=True),
            Posting.status == PostingStatus.CONFIRMED.value,
            Posting.created_at >= since,
        )
        .order_by(Posting.created_at)
        .execution_options(yield_per=1000)
    )
    for created_at, origin in session.execute(query):
        yield created_at, str(origin)
