"""The review page's exception queue: the queue's order, a finding's what-to-do, its correction.

The handlers in :mod:`reconcile.operator.console.app` carry these answers out; the queue's
order is section 10a's (priority, then due time), the same as ``reconcile findings``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from reconcile.db.models import FindingState
from reconcile.domain.vocab import NEEDS_REVIEW
from reconcile.operator.corrections import Corrected
from reconcile.operator.findings_view import queue_assessment
from reconcile.rules.correction import CORRECTABLE, MANUAL_STEPS, Plan
from reconcile.rules.priority import DEFAULT_RULES, Assessment, PriorityRules

CONSOLE_ACTOR = "console"
"""Who the trail records for what was done on the page."""

BULK_ACTIONS = ("assign", "resolve", "ignore")
"""What the queue's bulk form does to the findings ticked."""

FINDING_ACTIONS = ("assign", "comment", "reopen")
"""What a finding's page does besides closing and correcting it."""

OVERDUE_SHOWN = 20
"""Overdue findings the front page lists at most (the queue has them all)."""

Corrector = Callable[[Plan, str], Corrected]
"""Posts a plan with a note through the engine (:func:`reconcile.operator.corrections.correct`)."""


@dataclass(frozen=True)
class QueueTools:
    """What the page's queue needs beyond the database: thresholds, and how to post corrections.

    ``corrector`` is ``None`` when the page cannot reach Moesif (no ``MOESIF_MANAGEMENT_TOKEN``);
    the page then shows what a correction would post, and posts nothing.
    """

    rules: PriorityRules = DEFAULT_RULES
    corrector: Corrector | None = field(default=None)


@dataclass(frozen=True)
class QueueRow:
    """One finding in the queue, with its priority and due time."""

    state: FindingState
    assessment: Assessment
    overdue: bool


def in_queue_order(
    states: Sequence[FindingState], now: datetime, rules: PriorityRules
) -> list[QueueRow]:
    """Return the findings as queue rows, most urgent first (priority, then due time)."""
    rows = [_row(state, now, rules) for state in states]
    return sorted(rows, key=lambda row: row.assessment.queue_key())


def overdue_rows(
    states: Sequence[FindingState], now: datetime, rules: PriorityRules
) -> list[QueueRow]:
    """Return the findings needing review past their due time, the most overdue first."""
    rows = [row for row in (_row(state, now, rules) for state in states) if row.overdue]
    return sorted(
        rows,
        key=lambda row: (row.assessment.due_at, row.assessment.priority.rank, row.state.finding_id),
    )


def _row(state: FindingState, now: datetime, rules: PriorityRules) -> QueueRow:
    assessment = queue_assessment(state, now, rules)
    return QueueRow(state, assessment, state.status in NEEDS_REVIEW and assessment.overdue(now))


def what_to_do(category: str) -> str:
    """Return what a person does about a finding of ``category``."""
    return MANUAL_STEPS.get(category, "fix it in Moesif or Stripe.")


def correctable(category: str) -> bool:
    """Return whether the page offers an automatic correction for ``category``."""
    return category in CORRECTABLE
