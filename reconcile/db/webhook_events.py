"""Queries on the ``webhook_events`` table: events recorded on arrival, claimed, settled."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from reconcile.db.models import WebhookEvent
from reconcile.domain.vocab import PENDING_EVENTS, EventStatus


def is_recorded(session: Session, event_id: str) -> bool:
    """Return whether an event with this id is recorded already."""
    return bool(session.scalar(select(WebhookEvent.id).where(WebhookEvent.event_id == event_id)))


def add(
    session: Session,
    *,
    event_id: str,
    event_type: str,
    created: datetime,
    payload: str,
    now: datetime,
) -> None:
    """Record an event as received, due at once; no flush, no commit."""
    session.add(
        WebhookEvent(
            event_id=event_id,
            event_type=event_type,
            created=created,
            payload=payload,
            received_at=now,
            status=EventStatus.RECEIVED,
            attempts=0,
            next_attempt_at=now,
        )
    )


def due_ids(session: Session, now: datetime, limit: int) -> list[str]:
    """Return ids of pending events due by ``now``, oldest first."""
    return list(
        session.scalars(
            select(WebhookEvent.event_id)
            .where(WebhookEvent.status.in_(PENDING_EVENTS), WebhookEvent.next_attempt_at <= now)
            .order_by(WebhookEvent.created, WebhookEvent.id)
            .limit(limit)
        )
    )


def claim(session: Session, event_id: str, now: datetime, until: datetime) -> bool:
    """Move a due event's next attempt to ``until``; ``False`` when it was not due (taken).

    One ``UPDATE`` that only matches while the event is still pending and due: a compare-and-set.
    """
    taken = session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.event_id == event_id,
            WebhookEvent.status.in_(PENDING_EVENTS),
            WebhookEvent.next_attempt_at <= now,
        )
        .values(next_attempt_at=until)
    )
    return isinstance(taken, CursorResult) and taken.rowcount == 1


def earliest_due(session: Session) -> datetime | None:
    """Return when the earliest pending event falls due, or ``None`` when none is pending."""
    return session.scalar(
        select(func.min(WebhookEvent.next_attempt_at)).where(
            WebhookEvent.status.in_(PENDING_EVENTS)
        )
    )


def payload_of(session: Session, event_id: str) -> str:
    """Return a recorded event's JSON text."""
    return session.execute(
        select(WebhookEvent.payload).where(WebhookEvent.event_id == event_id)
    ).scalar_one()


def find(session: Session, event_id: str) -> WebhookEvent | None:
    """Return a recorded event's row, or ``None``."""
    return session.scalar(select(WebhookEvent).where(WebhookEvent.event_id == event_id))


def set_due(session: Session, event_id: str, at: datetime) -> None:
    """Make an event due again at ``at``; no attempt is counted."""
    _row(session, event_id).next_attempt_at = at


def settle(session: Session, event_id: str, status: EventStatus, note: str | None) -> None:
    """Count an attempt and record the event's final status, with why (or ``None``)."""
    row = _row(session, event_id)
    row.status = status
    row.attempts += 1
    row.last_error = note


def postpone(
    session: Session,
    event_id: str,
    error: str,
    now: datetime,
    backoff: Callable[[int], timedelta],
) -> None:
    """Count a failed attempt and make the event due after ``backoff(attempts)``."""
    row = _row(session, event_id)
    row.attempts += 1
    row.status = EventStatus.RETRY
    row.last_error = error
    row.next_attempt_at = now + backoff(row.attempts)


def _row(session: Session, event_id: str) -> WebhookEvent:
    return session.execute(
        select(WebhookEvent).where(WebhookEvent.event_id == event_id)
    ).scalar_one()
