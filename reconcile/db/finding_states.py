"""Queries on the findings lifecycle: list open findings, read one, close them with a note."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from reconcile.db.models import Finding, FindingNote, FindingState, Run


class FindingStatus(StrEnum):
    """Where a finding stands; only ``open`` counts for review."""

    OPEN = "open"
    RESOLVED = "resolved"
    IGNORED = "ignored"


class ClosedBy(StrEnum):
    """Who closed a finding."""

    RUN = "run"
    OPERATOR = "operator"


class NoteSource(StrEnum):
    """Where an operator's action came from."""

    CLI = "cli"
    PAGE = "page"


class UnknownFinding(LookupError):
    """One or more finding ids are not in ``finding_states``; nothing was closed."""

    def __init__(self, finding_ids: Sequence[str]) -> None:
        """Name the unknown ids."""
        self.finding_ids = tuple(finding_ids)
        super().__init__(f"unknown finding id(s): {', '.join(self.finding_ids)}")


@dataclass(frozen=True)
class FindingFilter:
    """Which findings to list; empty tuples and ``None`` mean no restriction."""

    include_closed: bool = False
    categories: tuple[str, ...] = ()
    companies: tuple[str, ...] = ()
    older_than: timedelta | None = None
    """Only findings first seen at least this long before ``now``."""
    largest_first: bool = True
    """Sort by the size of the correction (``|delta|``), largest first; else oldest first."""
    limit: int | None = None


def list_findings(session: Session, where: FindingFilter, now: datetime) -> list[FindingState]:
    """Return the findings ``where`` selects, sorted as it asks."""
    query = _filtered(select(FindingState), where, now)
    size = func.abs(func.coalesce(FindingState.delta_minor, 0))
    if where.largest_first:
        query = query.order_by(size.desc(), FindingState.first_seen_at, FindingState.finding_id)
    else:
        query = query.order_by(FindingState.first_seen_at, FindingState.finding_id)
    if where.limit is not None:
        query = query.limit(where.limit)
    return list(session.scalars(query))


def _filtered(
    query: Select[tuple[FindingState]], where: FindingFilter, now: datetime
) -> Select[tuple[FindingState]]:
    if not where.include_closed:
        query = query.where(FindingState.status == FindingStatus.OPEN)
    if where.categories:
        query = query.where(FindingState.category.in_(where.categories))
    if where.companies:
        query = query.where(FindingState.company_id.in_(where.companies))
    if where.older_than is not None:
        query = query.where(FindingState.first_seen_at <= now - where.older_than)
    return query


def get_finding(session: Session, finding_id: str) -> FindingState | None:
    """Return one finding by its id, or ``None``."""
    return session.get(FindingState, finding_id)


def notes_of(session: Session, finding_id: str) -> list[FindingNote]:
    """Return a finding's audit trail, oldest first."""
    query = (
        select(FindingNote)
        .where(FindingNote.finding_id == finding_id)
        .order_by(FindingNote.at, FindingNote.id)
    )
    return list(session.scalars(query))


def history_of(session: Session, state: FindingState) -> list[tuple[Finding, Run]]:
    """Return the per-run findings that reported this drift, oldest run first.

    Matched on category and on the Stripe movement's or the Moesif row's id, as the id names.
    """
    ids = []
    if state.transaction_id:
        ids.append(Finding.transaction_id == state.transaction_id)
    if state.moesif_id:
        ids.append(Finding.moesif_id == state.moesif_id)
    if not ids:
        return []
    query = (
        select(Finding, Run)
        .join(Run, Run.id == Finding.run_id)
        .where(Finding.category == state.category, or_(*ids))
        .order_by(Run.started_at, Finding.id)
    )
    return [(finding, run) for finding, run in session.execute(query)]


def close_findings(
    session: Session,
    finding_ids: Sequence[str],
    status: FindingStatus,
    note: str,
    source: NoteSource,
    now: datetime,
) -> list[FindingState]:
    """Close findings as ``resolved`` or ``ignored`` by an operator, with a note; does not commit.

    Every id must exist, or nothing is closed. A finding already closed is closed again with the
    new status and note; each call appends one ``finding_notes`` row per finding.

    Raises:
        UnknownFinding: some id is not a known finding.
        ValueError: ``status`` is ``open`` or ``note`` is blank.
    """
    if status is FindingStatus.OPEN:
        raise ValueError("a finding is closed as resolved or ignored, not open")
    if not note.strip():
        raise ValueError("closing a finding needs a note")
    wanted = list(dict.fromkeys(finding_ids))
    found = {
        state.finding_id: state
        for state in session.scalars(
            select(FindingState).where(FindingState.finding_id.in_(wanted))
        )
    }
    unknown = [finding_id for finding_id in wanted if finding_id not in found]
    if unknown:
        raise UnknownFinding(unknown)
    for finding_id in wanted:
        state = found[finding_id]
        state.status = status
        state.closed_at = now
        state.closed_by = ClosedBy.OPERATOR
        state.note = note
        session.add(
            FindingNote(finding_id=finding_id, at=now, action=status, note=note, source=source)
        )
    session.flush()
    return [found[finding_id] for finding_id in wanted]


def open_counts_by_subscription(session: Session) -> dict[tuple[str | None, str | None], int]:
    """Return how many findings are open per (company id, subscription id)."""
    query = (
        select(FindingState.company_id, FindingState.subscription_id, func.count())
        .where(FindingState.status == FindingStatus.OPEN)
        .group_by(FindingState.company_id, FindingState.subscription_id)
    )
    return {
        (company, subscription): int(count)
        for company, subscription, count in session.execute(query)
    }
