"""The events inbox: events recorded on arrival, drained by the worker; each step commits."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from reconcile.db import webhook_events
from reconcile.db.models import WebhookEvent
from reconcile.domain import origin
from reconcile.domain.times import from_unix
from reconcile.domain.vocab import EventStatus
from reconcile.safe_text import text_problem
from reconcile.serve.untrusted import id_problem

BASE_BACKOFF = timedelta(seconds=5)
MAX_BACKOFF = timedelta(hours=1)
LEASE = timedelta(minutes=2)
"""How long a claimed event stays with its worker; a worker that died lets go after it."""
BUSY_RETRY = timedelta(seconds=1)
"""How soon an event is tried again when another caller was posting its entry at that moment."""

MAX_EVENT_TYPE = 100
"""The longest event type the table holds (Stripe's are under 50 characters)."""

TOPUP_PREFIX = "topup:"
"""Ids of events ``/top-up`` queues itself for a payment it saw succeed (``topup:pi_…``)."""


def origin_of(event_id: str) -> str:
    """Return who asked for a posting: ``top-up:pi_…`` or ``webhook:evt_…``."""
    if event_id.startswith(TOPUP_PREFIX):
        return origin.for_top_up(event_id.removeprefix(TOPUP_PREFIX))
    return origin.for_webhook(event_id)


def backoff(attempts: int) -> timedelta:
    """Return how long to wait after ``attempts`` failed attempts (doubling, capped)."""
    delay: timedelta = BASE_BACKOFF * 2 ** max(0, attempts - 1)
    return min(MAX_BACKOFF, delay)


def unstorable(event: Mapping[str, Any], raw: bytes) -> str | None:
    """Return why a signed event cannot be recorded as it is, or ``None`` when it can.

    Its id must be a usable id (at most 255 characters, no NUL, valid Unicode), its type text
    the table holds, its body UTF-8.
    """
    problem = id_problem(event.get("id"), "the event id")
    if problem is not None:
        return problem
    kind = event.get("type")
    if not isinstance(kind, str) or len(kind) > MAX_EVENT_TYPE:
        return f"the event type must be text of at most {MAX_EVENT_TYPE} characters"
    if text_problem(kind) is not None:
        return f"the event type cannot be stored: {text_problem(kind)}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "the event is not UTF-8"
    return "the event contains a NUL byte" if "\x00" in text else None


def record(
    sessions: sessionmaker[Session], event: Mapping[str, Any], raw: str, now: datetime
) -> bool:
    """Record an event once, as ``raw`` JSON text; return ``False`` for an id seen before.

    Raises:
        SQLAlchemyError: the database could not record it; the caller answers 500.
    """
    event_id = str(event["id"])
    try:
        with sessions.begin() as session:
            if webhook_events.is_recorded(session, event_id):
                return False
            webhook_events.add(
                session,
                event_id=event_id,
                event_type=str(event.get("type") or ""),
                created=_created(event.get("created"), now),
                payload=raw,
                now=now,
            )
    except IntegrityError:
        return False
    return True


def due(sessions: sessionmaker[Session], now: datetime, limit: int = 50) -> list[str]:
    """Return ids of events the worker should act on now, oldest first."""
    with sessions() as session:
        return webhook_events.due_ids(session, now, limit)


def claim(
    sessions: sessionmaker[Session], event_id: str, now: datetime, lease: timedelta = LEASE
) -> bool:
    """Take a due event for one worker until ``now + lease``; ``False`` if another has it.

    A compare-and-set on ``next_attempt_at`` (one ``UPDATE`` that only matches while the event
    is still due), so two workers, in one process or many, on SQLite or PostgreSQL, never act on
    one event at once. The worker's result (:func:`settle`, :func:`postpone`) ends the lease;
    a worker that dies holding it lets the event fall due again when the lease runs out.
    """
    with sessions.begin() as session:
        return webhook_events.claim(session, event_id, now, now + lease)


def release(sessions: sessionmaker[Session], event_id: str, now: datetime) -> None:
    """Give a claimed event back, due again after :data:`BUSY_RETRY`; no attempt is counted."""
    with sessions.begin() as session:
        webhook_events.set_due(session, event_id, now + BUSY_RETRY)


def next_due(sessions: sessionmaker[Session]) -> datetime | None:
    """Return when the earliest pending event falls due, or ``None`` when none is pending."""
    with sessions() as session:
        return webhook_events.earliest_due(session)


def payload(sessions: sessionmaker[Session], event_id: str) -> dict[str, Any]:
    """Return a recorded event as Stripe sent it."""
    with sessions() as session:
        row = webhook_events.payload_of(session, event_id)
    found: dict[str, Any] = json.loads(row)
    return found


def settle(
    sessions: sessionmaker[Session], event_id: str, status: EventStatus, note: str | None = None
) -> None:
    """Record an event's final status (and why, for ``ignored``, ``unmapped`` and ``refused``)."""
    with sessions.begin() as session:
        webhook_events.settle(session, event_id, status, note)


def postpone(sessions: sessionmaker[Session], event_id: str, error: str, now: datetime) -> None:
    """Count a failed attempt and schedule the next one after :func:`backoff`."""
    with sessions.begin() as session:
        webhook_events.postpone(session, event_id, error, now, backoff)


def status_of(sessions: sessionmaker[Session], event_id: str) -> WebhookEvent | None:
    """Return a recorded event's row (detached), or ``None``."""
    with sessions() as session:
        row = webhook_events.find(session, event_id)
        if row is not None:
            session.expunge(row)
        return row


def _created(value: object, now: datetime) -> datetime:
    """Stripe's ``created`` (Unix seconds), or the time of receipt when it is not one."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**40:
        return from_unix(value)
    return now
