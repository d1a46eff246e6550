"""Queries on the ``topup_keys`` table: client ``Idempotency-Key``s of ``/top-up``, answered."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from reconcile.db.models import TopUpKey


def add(
    session: Session,
    *,
    key: str,
    request_hash: str,
    customer_id: str,
    now: datetime,
    claimed_until: datetime,
) -> None:
    """Store a new key, claimed until ``claimed_until``; a known key fails at the commit."""
    session.add(
        TopUpKey(
            idempotency_key=key,
            request_hash=request_hash,
            customer_id=customer_id,
            created_at=now,
            claimed_until=claimed_until,
            attempts=1,
        )
    )


def find(session: Session, key: str) -> TopUpKey | None:
    """Return the stored key's row, or ``None``."""
    return session.scalar(select(TopUpKey).where(TopUpKey.idempotency_key == key))


def take_over(session: Session, row: TopUpKey, until: datetime) -> bool:
    """Compare-and-set on ``attempts``: only one of several resuming requests gets the key."""
    taken = session.execute(
        update(TopUpKey)
        .where(
            TopUpKey.id == row.id,
            TopUpKey.answer_status.is_(None),
            TopUpKey.attempts == row.attempts,
        )
        .values(claimed_until=until, attempts=row.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    return isinstance(taken, CursorResult) and taken.rowcount == 1


def answer(session: Session, key: str, status: int, body: str, now: datetime) -> None:
    """Store the answer (status and JSON text) of a key still unanswered."""
    session.execute(
        update(TopUpKey)
        .where(TopUpKey.idempotency_key == key, TopUpKey.answer_status.is_(None))
        .values(answer_status=status, answer_body=body, answered_at=now)
    )


def release(session: Session, key: str, now: datetime) -> None:
    """Let a key still unanswered go: its claim ends ``now``."""
    session.execute(
        update(TopUpKey)
        .where(TopUpKey.idempotency_key == key, TopUpKey.answer_status.is_(None))
        .values(claimed_until=now)
    )
