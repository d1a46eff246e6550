"""Queries on the ``notifications`` table: each run's notification, stored before it is sent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from reconcile.db.models import Notification


def enqueue(session: Session, run_id: str, body: str, now: datetime) -> None:
    """Store a run's notification body, unsent, unless the run has one; flushes, no commit."""
    exists = session.scalar(select(Notification.id).where(Notification.run_id == run_id))
    if exists is None:
        session.add(Notification(run_id=run_id, payload=body, created_at=now, attempts=0))
        session.flush()


def pending(session: Session) -> list[Notification]:
    """Return the notifications not delivered yet, oldest first."""
    query = (
        select(Notification)
        .where(Notification.delivered_at.is_(None))
        .order_by(Notification.created_at, Notification.id)
    )
    return list(session.scalars(query))


def record_attempt(
    session: Session, notification_id: int, delivered_at: datetime | None, error: str | None
) -> None:
    """Count one delivery attempt: delivered at ``delivered_at``, or failed with ``error``."""
    row = session.get_one(Notification, notification_id)
    row.attempts += 1
    if delivered_at is not None:
        row.delivered_at = delivered_at
        row.last_error = None
    else:
        row.last_error = error
