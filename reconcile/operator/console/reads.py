"""What the review page reads from the snapshot: runs, drift over time, a finding's records."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from reconcile.db.expected import movement_of
from reconcile.db.finding_states import open_at_runs
from reconcile.db.ledger import rows_naming
from reconcile.db.models import FindingState, Run
from reconcile.db.runs import recent_runs as latest_runs
from reconcile.domain.money import to_major

RUNS_SHOWN = 30
"""Runs on the runs page and in the chart."""


def recent_runs(session: Session, limit: int = RUNS_SHOWN) -> list[Run]:
    """Return the latest runs, newest first."""
    return latest_runs(session, limit)


@dataclass(frozen=True)
class DriftOverTime:
    """Open findings at the end of each run: counts per category, amounts per category+currency."""

    moments: list[datetime]
    counts: dict[str, dict[datetime, Decimal]]
    amounts: dict[str, dict[datetime, Decimal]]


def drift_over_time(session: Session, runs: list[Run]) -> DriftOverTime:
    """Return what was open when each run ended, summed by the database per run and category.

    A finding is open at a moment when it was first seen by then and not closed before it.
    """
    at = {run.id: run.finished_at or run.started_at for run in runs}
    counts: dict[str, dict[datetime, Decimal]] = defaultdict(dict)
    amounts: dict[str, dict[datetime, Decimal]] = defaultdict(dict)
    for run_id, category, currency, count, amount in open_at_runs(session, list(at)):
        when = at[run_id]
        by_time = counts[category]
        by_time[when] = by_time.get(when, Decimal(0)) + count
        if currency and len(currency) == 3 and currency.isascii() and currency.isalpha():
            label = f"{category} ({currency.upper()})"
            amounts[label][when] = to_major(amount, currency)
    return DriftOverTime(sorted(at.values()), dict(counts), dict(amounts))


@dataclass(frozen=True)
class Records:
    """The Stripe movement and the Moesif rows a finding is about, as label/value pairs."""

    stripe: list[tuple[str, str]]
    moesif: list[list[tuple[str, str]]]


def records_of(session: Session, state: FindingState) -> Records:
    """Return the snapshot's Stripe movement and Moesif rows behind a finding."""
    stripe: list[tuple[str, str]] = []
    if state.transaction_id:
        movement = movement_of(session, state.transaction_id)
        if movement is not None:
            stripe = _pairs(movement, _STRIPE_FIELDS)
    rows = rows_naming(session, state.moesif_id, state.transaction_id)
    return Records(stripe, [_pairs(row, _MOESIF_FIELDS) for row in rows])


_STRIPE_FIELDS = (
    "transaction_id", "source", "entry_type", "amount_minor", "currency", "created_at",
    "stripe_object_id", "topup_id", "stripe_customer_id", "company_id", "subscription_id",
    "unmapped_reason",
)  # fmt: skip
_MOESIF_FIELDS = (
    "moesif_id", "transaction_id", "entry_type", "amount_raw", "currency", "company_id",
    "subscription_id", "created_at", "description", "first_seen_at", "last_seen_at",
)  # fmt: skip


def _pairs(row: object, fields: tuple[str, ...]) -> list[tuple[str, str]]:
    pairs = []
    for name in fields:
        value = getattr(row, name)
        if value is None:
            continue
        text = value.isoformat() if isinstance(value, datetime) else str(value)
        pairs.append((name, text))
    return pairs
