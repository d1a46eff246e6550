"""``reconcile findings``: the exception queue as a table, CSV or JSON, and closing findings."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from reconcile.db.finding_states import (
    FindingFilter,
    adopt_unmapped_events,
    amount_candidates,
    close_findings,
    list_findings,
    queue_candidates,
)
from reconcile.db.models import FindingState
from reconcile.db.subscriptions import kept_balances
from reconcile.domain.money import format_major
from reconcile.domain.times import to_iso
from reconcile.domain.vocab import NEEDS_REVIEW, FindingStatus, NoteSource
from reconcile.rules.amount_rank import Sized, by_amount
from reconcile.rules.priority import DEFAULT_RULES, Assessment, PriorityRules, assess

SORTS = ("queue", "amount", "age")
"""The orders of the queue: priority then due time (the default); blocked-but-owed first, then
the largest amount within each currency; oldest first."""

COLUMNS = (
    "finding_id",
    "status",
    "category",
    "priority",
    "due_at",
    "overdue",
    "owner",
    "company_id",
    "subscription_id",
    "transaction_id",
    "moesif_id",
    "currency",
    "stripe_amount",
    "moesif_amount",
    "delta",
    "first_seen_at",
    "last_seen_at",
    "runs_seen",
    "closed_at",
    "closed_by",
    "note",
    "detail",
)
"""The fields of each listed finding, in this order."""

_TABLE = (
    "finding_id",
    "priority",
    "due_at",
    "owner",
    "status",
    "category",
    "company_id",
    "subscription_id",
    "transaction_id",
    "moesif_id",
    "currency",
    "delta",
    "first_seen_at",
    "last_seen_at",
    "runs_seen",
)

OVERDUE_MARK = " OVERDUE"
"""Appended to the due time of an overdue finding in the table."""


def listing(
    engine: Engine,
    where: FindingFilter,
    fmt: str,
    now: datetime,
    rules: PriorityRules = DEFAULT_RULES,
    sort: str = "queue",
) -> str:
    """Return the queue ``where`` selects in ``fmt`` (``table``, ``csv`` or ``json``).

    ``sort`` ``queue`` sorts as the exception queue is (section 10a): priority, then due time,
    then the size of the correction; ``amount`` puts customers blocked while owed first, then
    ranks within each currency by the absolute delta (:mod:`reconcile.rules.amount_rank`, never
    comparing two currencies' numbers); ``age`` oldest first. An overdue finding is marked.
    """
    with Session(engine) as session, session.begin():
        adopt_unmapped_events(session, now)
        if sort == "amount":
            states = largest_first(session, where, now)
        elif sort == "queue":
            states = most_urgent(session, where, now, rules)
        else:
            states = list_findings(session, where, now)
        assessed = [(queue_assessment(state, now, rules), state) for state in states]
        rows = [_fields(state, assessment, now) for assessment, state in assessed]
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    if not rows:
        return "no open findings" if not where.include_closed else "no findings"
    table = [list(_TABLE)] + [[_safe(_cell(row, name)) for name in _TABLE] for row in rows]
    widths = [max(len(line[column]) for line in table) for column in range(len(_TABLE))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    )


def close(
    engine: Engine, finding_ids: Sequence[str], status: FindingStatus, note: str, now: datetime
) -> int:
    """Close findings by an operator with a note; return how many.

    Raises:
        UnknownFinding: some id is unknown; nothing was closed.
    """
    with Session(engine) as session, session.begin():
        closed = close_findings(session, finding_ids, status, note, NoteSource.CLI, now)
    return len(closed)


def largest_first(session: Session, where: FindingFilter, now: datetime) -> list[FindingState]:
    """Return the findings ``where`` selects in amount order, at most its ``limit``.

    Chosen by that order, so a limit never drops a currency's largest finding to keep another
    currency's larger number (see :func:`in_amount_order`).
    """
    return in_amount_order(session, amount_candidates(session, where, now))[: where.limit]


def most_urgent(
    session: Session, where: FindingFilter, now: datetime, rules: PriorityRules
) -> list[FindingState]:
    """Return the findings ``where`` selects in queue order, at most its ``limit``.

    Priority, then due time (section 10a), then the size of the correction, then the first
    sighting; chosen by that order, so a limit never drops an overdue finding to keep a larger
    number of another currency (see :func:`queue_candidates`).
    """
    candidates = queue_candidates(session, where, now, rules)
    candidates.sort(
        key=lambda state: (-abs(state.delta_minor or 0), state.first_seen_at, state.finding_id)
    )
    candidates.sort(key=lambda state: queue_assessment(state, now, rules).queue_key())
    return candidates[: where.limit]


def in_amount_order(session: Session, states: Sequence[FindingState]) -> list[FindingState]:
    """Return findings blocked-but-owed first, then by amount within each currency.

    ``blocked`` is Moesif's available balance of the subscription as last read (zero or less).
    """
    balances = kept_balances(session, {s.subscription_id for s in states if s.subscription_id})
    sized = [
        Sized(
            state.finding_id,
            state.currency,
            state.delta_minor,
            blocked=balances.get(state.subscription_id or "", 1) <= 0,
        )
        for state in states
    ]
    return [states[index] for index in by_amount(sized)]


def queue_assessment(state: FindingState, now: datetime, rules: PriorityRules) -> Assessment:
    """Return a finding's priority and due time (section 10a) at ``now``."""
    return assess(state.delta_minor, state.currency, state.first_seen_at, now, rules)


def _cell(row: dict[str, object], name: str) -> str:
    text = str(row[name] if row[name] is not None else "")
    if name == "due_at" and row["overdue"]:
        return text + OVERDUE_MARK
    return text


def _fields(state: FindingState, assessment: Assessment, now: datetime) -> dict[str, object]:
    currency = state.currency or "usd"
    waiting = state.status in NEEDS_REVIEW
    return {
        "finding_id": state.finding_id,
        "priority": assessment.priority.value,
        "due_at": to_iso(assessment.due_at),
        "overdue": waiting and assessment.overdue(now),
        "owner": state.owner,
        "status": state.status,
        "category": state.category,
        "company_id": state.company_id,
        "subscription_id": state.subscription_id,
        "transaction_id": state.transaction_id,
        "moesif_id": state.moesif_id,
        "currency": state.currency,
        "stripe_amount": _major(state.stripe_amount_minor, currency),
        "moesif_amount": _major(state.moesif_amount_minor, currency),
        "delta": _major(state.delta_minor, currency),
        "first_seen_at": to_iso(state.first_seen_at),
        "last_seen_at": to_iso(state.last_seen_at),
        "runs_seen": state.runs_seen,
        "closed_at": to_iso(state.closed_at) if state.closed_at else None,
        "closed_by": state.closed_by,
        "note": state.note,
        "detail": state.detail,
    }


def _major(minor: int | None, currency: str) -> str | None:
    return None if minor is None else format_major(minor, currency)


def _safe(text: str) -> str:
    """Return text with control characters escaped, so data cannot drive the terminal."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )
