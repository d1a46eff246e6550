"""Queries on the runs table: the run history and the watermark."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from reconcile.db.models import Run


class RunStatus(StrEnum):
    """How a run ended (``running`` while it runs)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    GUARDRAIL = "guardrail"
    CRASHED = "crashed"


def last_watermark(session: Session) -> datetime | None:
    """Return where the last successful full run ended, if any run did."""
    return session.scalar(select(func.max(Run.watermark)))


def last_pending_since(session: Session) -> datetime | None:
    """Return the oldest still-pending Stripe movement the last successful full run saw."""
    latest = select(func.max(Run.watermark)).scalar_subquery()
    return session.scalar(select(Run.pending_since).where(Run.watermark == latest).limit(1))


def mark_crashed(session: Session, now: datetime) -> int:
    """Mark runs left ``running`` by a process that died; call it only while holding the lock."""
    result = session.execute(
        update(Run)
        .where(Run.status == RunStatus.RUNNING)
        .values(status=RunStatus.CRASHED, finished_at=now, error="the process ended mid-run")
    )
    return int(getattr(result, "rowcount", 0) or 0)
